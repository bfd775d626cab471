"""Parity: the NumPy twin and the PyTorch twin, started from the same weights, compared tensor by tensor."""
