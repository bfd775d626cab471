"""The NumPy twin: a multilayer perceptron written by hand. Never imports torch.

Start with mlp.py, the whole default training step on one screen; toolbox/ builds the other
layers, losses and optimizers on it, extras/ the model files, the estimator and the chapters' data.
"""
