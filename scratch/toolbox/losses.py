"""Losses by hand beside the core's softmax cross-entropy, each returning (loss, dloss/dinput).

Twin: nn.CrossEntropyLoss, nn.BCELoss, nn.BCEWithLogitsLoss and nn.MSELoss in torchimpl/. Every
loss is the mean over all elements (torch's default reduction). The element-wise losses refuse
predictions and targets of different shapes instead of broadcasting them.
Notation: N batch, C classes.
"""

import numpy as np

from common.errors import InputError
from scratch.mlp import softmax_cross_entropy

# ----------------------------------------------------------------------------- cross-entropy


def cross_entropy(logits, y):
    """The core's softmax cross-entropy (scratch.mlp.softmax_cross_entropy), after checking the
    labels: an index outside [0, C) would silently pick a wrong entry, or fail deep in NumPy."""
    N, C = logits.shape
    if y.shape != (N,):
        raise InputError(f"labels must have shape ({N},) to match the logits, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got {y.dtype}")
    if N and (y.min() < 0 or y.max() >= C):
        raise InputError(f"labels must lie in [0, {C}), found {int(y.min() if y.min() < 0 else y.max())}")
    return softmax_cross_entropy(logits, y)


# ----------------------------------------------------------------------------- binary cross-entropy

# torch floors BCE's gradient denominator p (1 - p) at EPSILON, a C++ float constant (1e-12
# rounded to float32), so that p = 0 or 1 gives a finite gradient.
_BCE_EPSILON = float(np.float32(1e-12))


def binary_cross_entropy(probs, targets):
    """Mean of -(y log p + (1 - y) log(1 - p)), like nn.BCELoss on sigmoid outputs; and d/dp.

    As torch does, each log is clamped at -100, so p = 0 or 1 costs at most 100 per element
    instead of inf, and log(1 - p) is taken as log1p(-p). The gradient is
    (p - y) / max(p (1 - p), 1e-12) / size, with torch's floor on the denominator.
    """
    _check_same_shape(probs, targets, "binary_cross_entropy")
    for name, a in [("probabilities", probs), ("targets", targets)]:
        if a.size and not (a.min() >= 0 and a.max() <= 1):  # the negation also catches nan
            raise InputError(f"binary_cross_entropy needs {name} between 0 and 1: apply a "
                             f"sigmoid first, or use binary_cross_entropy_with_logits")
    with np.errstate(divide="ignore"):  # log(0) = -inf, then clamped to -100 like torch
        log_p = np.maximum(np.log(probs), -100)  # N, ...   (probs' shape throughout)
        log_1mp = np.maximum(np.log1p(-probs), -100)  # N, ...
    losses = (targets - 1) * log_1mp - targets * log_p  # N, ...
    eps = np.asarray(_BCE_EPSILON, dtype=probs.dtype)
    # d/dp of mean BCE = (p - y) / (p (1 - p)) / size
    dprobs = (probs - targets) / np.maximum((1 - probs) * probs, eps) / probs.size  # N, ...
    return losses.mean(), dprobs


def binary_cross_entropy_with_logits(logits, targets):
    """Mean of BCE(sigmoid(x), y) computed from the logits x, like nn.BCEWithLogitsLoss; and d/dx.

    torch writes it as (1 - y) x - log sigmoid(x), with
    log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)): exp only sees non-positive numbers, so
    logits of +-1e4 give a finite loss and gradient. d/dx = (sigmoid(x) - y) / size.
    """
    _check_same_shape(logits, targets, "binary_cross_entropy_with_logits")
    z = np.exp(-np.abs(logits))  # N, ...   (logits' shape throughout), in (0, 1]
    log_sigmoid = np.minimum(logits, 0) - np.log1p(z)  # N, ...
    losses = (1 - targets) * logits - log_sigmoid  # N, ...
    # sigmoid from the same e^-|x|: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below
    sigmoid = np.where(logits >= 0, 1 / (1 + z), z / (1 + z))  # N, ...
    dlogits = (sigmoid - targets) / logits.size  # N, ...   (sigmoid(x) - y) / size
    return losses.mean(), dlogits


# ----------------------------------------------------------------------------- mean squared error


def mse(pred, target):
    """Mean of (pred - target)^2 over every element, like nn.MSELoss; and its gradient,
    d/dpred = 2 (pred - target) / size.
    """
    _check_same_shape(pred, target, "mse")
    diff = pred - target  # N, ...   (pred's shape throughout)
    dpred = 2 / pred.size * diff  # N, ...   torch's order: (2 / size) * diff
    return (diff * diff).mean(), dpred


def _check_same_shape(pred, target, loss_name):
    """Refuse shapes that differ: NumPy would broadcast (N, 1) against (N,) to (N, N) silently."""
    if pred.shape == target.shape:
        return
    try:
        spread = f"; NumPy would broadcast them to {np.broadcast_shapes(pred.shape, target.shape)}"
    except ValueError:
        spread = ""
    raise InputError(f"{loss_name}: predictions have shape {pred.shape} but targets have "
                     f"{target.shape}{spread}: reshape the targets to {pred.shape}")
