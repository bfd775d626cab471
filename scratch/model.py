"""The network by hand: parameters drawn as nn.Linear draws them, forward with caches, backward.

Twin: torchimpl/model.py (class MLP). Parameters live in a dict {"W1", "b1", "W2", ...}; W_i is
stored (out, in) like nn.Linear's weight, so copying across is a plain copy. Layers alternate
Linear and ReLU, with raw logits out. Notation: N batch, D in, H hidden, C classes.
"""

import numpy as np

from common.errors import InputError
from scratch.layers import linear_backward, linear_forward, relu_backward, relu_forward

# ----------------------------------------------------------------------------- parameters


def check_layer_sizes(layer_sizes):
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise InputError(f"layer sizes need at least an input and an output width, got {sizes}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise InputError(f"every layer width must be a positive whole number, got {sizes}")
    return [int(s) for s in sizes]


def init_params(layer_sizes, rng, dtype=np.float32):
    """W_i, b_i ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), exactly nn.Linear's distribution.

    nn.Linear calls kaiming_uniform_(a=sqrt(5)): bound = sqrt(2 / (1 + 5)) * sqrt(3 / fan_in)
    = 1 / sqrt(fan_in); its bias uses the same bound.
    """
    sizes = check_layer_sizes(layer_sizes)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        bound = 1 / np.sqrt(fan_in)
        params[f"W{i}"] = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)
        params[f"b{i}"] = rng.uniform(-bound, bound, size=fan_out).astype(dtype)
    return params


def layer_sizes_of(params):
    n = len(params) // 2
    return [params["W1"].shape[1]] + [params[f"W{i}"].shape[0] for i in range(1, n + 1)]


def count_params(params):
    return sum(p.size for p in params.values())


# ----------------------------------------------------------------------------- forward


def forward(params, X):
    """Return (logits, caches): Linear, ReLU, ..., Linear. Caches hold what backward needs."""
    n_layers = len(params) // 2
    W1 = params["W1"]
    if X.ndim != 2 or X.shape[1] != W1.shape[1]:
        raise InputError(f"inputs have shape {X.shape} but the first layer expects "
                         f"(N, {W1.shape[1]}): reshape the data or change the layer sizes")
    if X.dtype != W1.dtype:
        raise InputError(f"inputs are {X.dtype} but the parameters are {W1.dtype}: "
                         f"cast one to the other")
    h, caches = X, []  # N, D
    for i in range(1, n_layers + 1):
        h, linear_cache = linear_forward(h, params[f"W{i}"], params[f"b{i}"])  # N, H_i
        relu_cache = None
        if i < n_layers:
            h, relu_cache = relu_forward(h)  # N, H_i
        caches.append((linear_cache, relu_cache))
    return h, caches  # logits N, C


# ----------------------------------------------------------------------------- backward


def backward(dlogits, caches):
    """Return (grads, dX): grads has the same keys as params; dX is dL/dinput."""
    grads, dh = {}, dlogits  # N, C
    for i in range(len(caches), 0, -1):
        linear_cache, relu_cache = caches[i - 1]
        if relu_cache is not None:
            dh = relu_backward(dh, relu_cache)  # N, H_i
        dh, grads[f"W{i}"], grads[f"b{i}"] = linear_backward(dh, linear_cache)  # N, H_{i-1}
    return {name: grads[name] for name in sorted(grads, key=_param_order)}, dh


def _param_order(name):
    return int(name[1:]), name[0] != "W"  # W1, b1, W2, b2, ...


# ----------------------------------------------------------------------------- predicting


def predict(params, X):
    """The class with the largest logit for each row."""
    logits, _ = forward(params, X)
    return logits.argmax(axis=1)
