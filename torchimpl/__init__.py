"""The PyTorch twin: the same multilayer perceptron as scratch/, with torch.nn and autograd."""
