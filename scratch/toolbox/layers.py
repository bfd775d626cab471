"""More layers by hand, beside the core's Linear and ReLU (scratch/mlp.py): each forward returns
(out, cache), its backward sits right under it.

Twin: torch ships these as nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Dropout and nn.BatchNorm1d
(torchimpl/toolbox/model.py); autograd writes the backwards. Each one reproduces torch's formula.
Notation: N batch, D in features, H out features.
"""

import numpy as np

from common.errors import InputError

# ----------------------------------------------------------------------------- leaky relu


def leaky_relu_forward(x, negative_slope=0.01):
    """nn.LeakyReLU: x where x > 0, else negative_slope * x (torch computes x * slope)."""
    out = np.where(x > 0, x, x * negative_slope)  # N, H
    return out, (x, negative_slope)


def leaky_relu_backward(dout, cache):
    """Slope 1 where the input was positive, negative_slope elsewhere (x = 0 included, as torch)."""
    x, negative_slope = cache
    return np.where(x > 0, dout, dout * negative_slope)  # N, H


# ----------------------------------------------------------------------------- sigmoid


def sigmoid_forward(x):
    """sigma(x) = 1 / (1 + e^-x), as torch.sigmoid computes it for x >= 0.

    e^-x overflows for x < -709, so negative inputs use the equal form e^x / (1 + e^x), built
    from z = e^-|x| <= 1: exp never sees a positive argument.
    """
    z = np.exp(-np.abs(x))  # N, H   (0, 1]
    out = np.where(x >= 0, 1 / (1 + z), z / (1 + z))  # N, H
    return out, out


def sigmoid_backward(dout, cache):
    """d sigma / dx = sigma (1 - sigma); multiplied in torch's order, dout * (1 - y) * y."""
    out = cache
    return dout * (1 - out) * out  # N, H


# ----------------------------------------------------------------------------- tanh


def tanh_forward(x):
    out = np.tanh(x)  # N, H   (bounded, no overflow for any x)
    return out, out


def tanh_backward(dout, cache):
    """d tanh / dx = 1 - tanh^2; torch's order, dout * (1 - y * y)."""
    out = cache
    return dout * (1 - out * out)  # N, H


# ----------------------------------------------------------------------------- dropout


def dropout_mask(rng, shape, p, dtype=np.float64):
    """Draw an inverted-dropout mask for dropout_forward: 1/(1-p) with probability 1-p, else 0.

    This is torch's own construction (aten _dropout_impl): noise = bernoulli(1 - p) / (1 - p).
    The mask is already scaled, so training output is x * mask and the expected output equals x.
    Hand the same mask to both twins for parity. p = 0 gives all ones; p = 1 gives all zeros.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating)) or not 0 <= p <= 1:
        raise InputError(f"dropout probability must be a number between 0 and 1, got {p!r}")
    dtype = np.dtype(dtype)
    if p == 1:
        return np.zeros(shape, dtype)  # every unit dropped: torch returns zeros too
    keep = rng.random(shape) < 1 - p  # N, H   bool, P(keep) = 1 - p
    return keep.astype(dtype) / dtype.type(1 - p)  # N, H   0 or 1/(1-p)


def dropout_forward(x, mask):
    """Inverted dropout with a given mask from dropout_mask: out = x * mask.

    mask None means no dropout: evaluation mode (or p = 0), where nn.Dropout is the identity.
    """
    if mask is None:
        return np.array(x, copy=True), None  # N, H   identity, never an alias of x
    if mask.shape != x.shape:
        raise InputError(f"dropout mask has shape {mask.shape} but the input has {x.shape}: "
                         f"draw the mask with dropout_mask(rng, x.shape, p)")
    out = x * mask  # N, H   kept units scaled by 1/(1-p), dropped ones 0
    return out, mask


def dropout_backward(dout, cache):
    """dout/dx = mask: the same units are dropped and the same scale applied on the way back."""
    mask = cache
    if mask is None:
        return np.array(dout, copy=True)  # N, H   identity
    return dout * mask  # N, H


# ----------------------------------------------------------------------------- batch norm


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5,
                      train=True):
    """nn.BatchNorm1d over the features of x (N, D): out = gamma * xhat + beta, where
    xhat = (x - mean) / sqrt(var + eps) per feature.

    Returns (out, cache, running_mean, running_var); cache is (x, gamma, mean, invstd, train)
    with invstd = 1 / sqrt(var + eps). Running statistics are never written in place:
    training returns new arrays
        running_mean' = momentum * mean + (1 - momentum) * running_mean
        running_var'  = momentum * var_unbiased + (1 - momentum) * running_var
    and evaluation returns the given arrays unchanged. Training normalises with the batch's
    mean and biased variance sum((x - mean)^2) / N but tracks the unbiased one, / (N - 1).
    Evaluation normalises with the running statistics instead of the batch's.
    """
    N, D = _check_batchnorm_shapes(x, gamma, beta, running_mean, running_var)
    if train:
        if N < 2:
            raise InputError(f"batch norm in training mode needs more than 1 value per feature, "
                             f"got input shape {x.shape}: use a batch of 2 or more, or eval mode")
        mean = x.mean(axis=0)  # D
        var = ((x - mean) ** 2).mean(axis=0)  # D   biased, / N
        running_mean = momentum * mean + (1 - momentum) * running_mean  # D
        running_var = momentum * var * N / (N - 1) + (1 - momentum) * running_var  # D   unbiased
    else:
        mean, var = running_mean, running_var  # D
    std = np.sqrt(var + eps)  # D
    xhat = (x - mean) / std  # N, D   zero mean, unit variance per feature in training
    out = gamma * xhat + beta  # N, D
    return out, (x, gamma, mean, 1 / std, train), running_mean, running_var


def batchnorm_backward(dout, cache):
    """From dL/dout (N, D) to dL/dx, dL/dgamma, dL/dbeta.

    dgamma = sum(dout xhat), dbeta = sum(dout), and with dxhat = dout * gamma: in training
    mean and var depend on x, which gives
        dx = (N dxhat - sum(dxhat) - xhat * sum(dxhat xhat)) * invstd / N
    (for a constant dout the three terms cancel to 0: a ones gradient hides bugs here).
    In evaluation they are constants and dx = dxhat * invstd.
    """
    x, gamma, mean, invstd, train = cache
    N = x.shape[0]
    xhat = (x - mean) * invstd  # N, D
    dbeta = dout.sum(axis=0)  # D
    dgamma = (dout * xhat).sum(axis=0)  # D
    dxhat = dout * gamma  # N, D
    if train:
        dx = (N * dxhat - dxhat.sum(axis=0)  # N, D
              - xhat * (dxhat * xhat).sum(axis=0)) * invstd / N
    else:
        dx = dxhat * invstd  # N, D
    return dx, dgamma, dbeta


def _check_batchnorm_shapes(x, gamma, beta, running_mean, running_var):
    if x.ndim != 2:
        raise InputError(f"batch norm expects a 2-D input (N, D), got shape {x.shape}: "
                         f"flatten the features first")
    N, D = x.shape
    for name, a in [("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)]:
        if a.shape != (D,):
            raise InputError(f"batch norm {name} has shape {a.shape} but the input has {D} "
                             f"features: it must have shape ({D},)")
    return N, D
