"""Benchmarks: epoch times of the NumPy twin and the PyTorch twin on CPU and CUDA."""
