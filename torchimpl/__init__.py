"""The PyTorch twin: the same multilayer perceptron as scratch/, with torch.nn and autograd.

Start with mlp.py, the twin of scratch/mlp.py; toolbox/ holds the configurable module, extras/
the model files, the estimator and the chapters' data as tensors.
"""
