"""Layers by hand: each forward returns (out, cache), its backward sits right under it.

Twin: torch ships these as nn.Linear and nn.ReLU (torchimpl/model.py); autograd writes the
backwards. Notation: N batch, D in features, H out features.
"""

import numpy as np

# ----------------------------------------------------------------------------- linear


def linear_forward(x, W, b):
    """y = x W^T + b, as nn.Linear computes it (W is stored (out, in))."""
    out = x @ W.T + b  # N, H
    return out, (x, W)


def linear_backward(dout, cache):
    """From dL/dy to dL/dx, dL/dW, dL/db; dout is (N, H)."""
    x, W = cache
    dx = dout @ W  # N, D   (dy/dx = W)
    dW = dout.T @ x  # H, D   (sum over the batch of outer products dout_n x_n^T)
    db = dout.sum(axis=0)  # H      (b is added to every row)
    return dx, dW, db


# ----------------------------------------------------------------------------- relu


def relu_forward(x):
    out = np.maximum(x, 0)  # N, H
    return out, x


def relu_backward(dout, cache):
    """Pass the gradient where the input was positive; at exactly 0 it is 0, as in torch."""
    x = cache
    return np.where(x > 0, dout, 0)  # N, H  (a new array: dout is never written)
