"""The configurable network by hand, built on the core (scratch/mlp.py): forward with caches, backward.

Twin: torchimpl/toolbox/model.py (class MLP). Linear, ReLU and nn.Linear's draw come from the
core. Parameters live in a dict {"W1", "b1", "W2", ...}; W_i is stored (out, in) like
nn.Linear's weight, so copying across is a plain copy. Each hidden layer
is Linear, then BatchNorm (optional), the activation, then Dropout (optional); the last layer is
Linear alone, with a sigmoid on top only for binary cross-entropy on probabilities.
Notation: N batch, D in, H hidden, C classes.
"""

from dataclasses import dataclass, field

import numpy as np

from common.errors import InputError
from scratch import mlp
from scratch.toolbox import layers

# ----------------------------------------------------------------------------- architecture

ACTIVATIONS = {  # name -> (forward, backward), nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU
    "relu": (mlp.relu_forward, mlp.relu_backward),
    "tanh": (layers.tanh_forward, layers.tanh_backward),
    "sigmoid": (layers.sigmoid_forward, layers.sigmoid_backward),
    "leaky_relu": (layers.leaky_relu_forward, layers.leaky_relu_backward),
}


@dataclass(frozen=True)
class Arch:
    """How the layers are wired beyond their widths: torch's choice of modules in MLP.net."""

    activation: str = "relu"
    batchnorm: bool = False
    dropout: float = 0.0  # probability of dropping a hidden unit in training
    sigmoid_output: bool = False  # probabilities out, for binary cross-entropy

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {self.activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout probability must be in [0, 1), got {self.dropout}")


# ----------------------------------------------------------------------------- parameters


def check_layer_sizes(layer_sizes):
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise InputError(f"layer sizes need at least an input and an output width, got {sizes}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
            raise InputError(f"every layer width must be a positive whole number, got {sizes}")
    return [int(s) for s in sizes]


def init_params(layer_sizes, rng, dtype=np.float32, batchnorm=False):
    """The core's weights and biases (scratch.mlp.init_model: nn.Linear's draw); with batchnorm
    every hidden layer also gets gamma_i = 1 and beta_i = 0, as nn.BatchNorm1d starts."""
    sizes = check_layer_sizes(layer_sizes)
    core, params = mlp.init_model(sizes, rng, dtype), {}
    for i in range(1, len(sizes)):
        params[f"W{i}"], params[f"b{i}"] = core[f"W{i}"], core[f"b{i}"]
        if batchnorm and i < len(sizes) - 1:  # a hidden layer
            params[f"gamma{i}"], params[f"beta{i}"] = np.ones(sizes[i], dtype), np.zeros(sizes[i], dtype)
    return params


def init_buffers(params):
    """Batch norm's running statistics (torch's buffers): mean 0, variance 1, nothing counted."""
    buffers = {}
    for name, gamma in params.items():
        if name.startswith("gamma"):
            i = name[len("gamma"):]
            buffers[f"running_mean{i}"] = np.zeros_like(gamma)
            buffers[f"running_var{i}"] = np.ones_like(gamma)
            buffers[f"num_batches_tracked{i}"] = 0
    return buffers


def layer_sizes_of(params):
    n = sum(name.startswith("W") for name in params)
    return [params["W1"].shape[1]] + [params[f"W{i}"].shape[0] for i in range(1, n + 1)]


def count_params(params):
    return sum(p.size for p in params.values())


# ----------------------------------------------------------------------------- forward


def forward(params, X, arch=Arch(), buffers=None, train=True, masks=None, rng=None):
    """Return (out, caches). train=False is evaluation mode (torch's model.eval()): batch norm
    uses its running statistics and dropout is the identity. In training, batch norm's running
    statistics in `buffers` are updated, and dropout uses masks[i - 1] for hidden layer i when
    given (parity hands both twins the same masks), otherwise draws masks from `rng`.
    """
    n_layers = sum(name.startswith("W") for name in params)
    W1 = params["W1"]
    if X.ndim != 2 or X.shape[1] != W1.shape[1]:
        raise InputError(f"inputs have shape {X.shape} but the first layer expects "
                         f"(N, {W1.shape[1]}): reshape the data or change the layer sizes")
    if X.dtype != W1.dtype:
        raise InputError(f"inputs are {X.dtype} but the parameters are {W1.dtype}: "
                         f"cast one to the other")
    activation_forward = ACTIVATIONS[arch.activation][0]
    h, caches = X, []  # N, D
    for i in range(1, n_layers + 1):
        h, cache = mlp.linear_forward(h, params[f"W{i}"], params[f"b{i}"])  # N, H_i
        caches.append(("linear", i, cache))
        if i == n_layers:
            break
        if f"gamma{i}" in params:
            h, cache, mean, var = layers.batchnorm_forward(
                h, params[f"gamma{i}"], params[f"beta{i}"], buffers[f"running_mean{i}"],
                buffers[f"running_var{i}"], train=train)  # N, H_i
            if train:
                buffers[f"running_mean{i}"], buffers[f"running_var{i}"] = mean, var
                buffers[f"num_batches_tracked{i}"] += 1
            caches.append(("batchnorm", i, cache))
        h, cache = activation_forward(h)  # N, H_i
        caches.append((arch.activation, i, cache))
        if train and arch.dropout > 0:
            mask = masks[i - 1] if masks is not None else layers.dropout_mask(rng, h.shape, arch.dropout, h.dtype)
            h, cache = layers.dropout_forward(h, mask)  # N, H_i
            caches.append(("dropout", i, cache))
    if arch.sigmoid_output:
        h, cache = layers.sigmoid_forward(h)  # N, C   probabilities
        caches.append(("sigmoid", n_layers, cache))
    return h, caches  # N, C


# ----------------------------------------------------------------------------- backward


def backward(dout, caches, input_grad=False):
    """Return (grads, dX): grads has the same keys as params (the last layer's first); dX = dL/dinput
    with input_grad, otherwise None, as in the core's backward: torch leaves X.grad None unless X
    requires grad, and no training step reads it, so the first layer skips the product dout @ W1."""
    grads, dh = {}, dout  # N, C
    for kind, i, cache in reversed(caches):
        if kind == "linear":  # below layer 1 lie the inputs: dL/dX only when asked for
            dh, grads[f"W{i}"], grads[f"b{i}"] = mlp.linear_backward(dh, cache, i > 1 or input_grad)  # N, H_{i-1}
        elif kind == "batchnorm":
            dh, grads[f"gamma{i}"], grads[f"beta{i}"] = layers.batchnorm_backward(dh, cache)  # N, H_i
        elif kind == "dropout":
            dh = layers.dropout_backward(dh, cache)  # N, H_i
        else:  # an activation, or the sigmoid on the output
            dh = ACTIVATIONS[kind][1](dh, cache)  # N, H_i
    return grads, dh


# ----------------------------------------------------------------------------- the network as one object


@dataclass
class Network:
    """The parameters, the wiring and batch norm's buffers in one object, as torch's MLP module
    holds them: what scratch/train.py and the model files pass around as `model`. rng draws the
    dropout masks in training (nn.Dropout draws from torch's global generator)."""

    params: dict
    arch: Arch = Arch()
    buffers: dict = field(default_factory=dict)
    rng: np.random.Generator | None = None


# ----------------------------------------------------------------------------- predicting


def predict(params, X, arch=Arch(), buffers=None):
    """The class with the largest output for each row, in evaluation mode."""
    out, _ = forward(params, X, arch, buffers, train=False)
    return out.argmax(axis=1)
