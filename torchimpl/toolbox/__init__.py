"""The PyTorch toolbox, twin of scratch/toolbox/: torch ships the layers, losses, optimizers and
schedules, so the one file here is model.py, the configurable network of python -m torchimpl.train."""
