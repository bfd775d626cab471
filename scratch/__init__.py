"""The NumPy twin: a multilayer perceptron written by hand. Never imports torch."""
