"""What both twins share and neither owns: file names and checksums, the command line, errors.

Nothing in this package imports NumPy or torch, so that scratch/ and torchimpl/ can both use it
without either depending on the other's framework.
"""
