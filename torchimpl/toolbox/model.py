"""The network with torch.nn: Linear, [BatchNorm1d], activation, [Dropout], ..., Linear.

Twin: scratch/toolbox/model.py (Arch, init_params, forward, backward). nn.Linear draws its own weights
from U(-1/sqrt(fan_in), 1/sqrt(fan_in)); autograd writes the backward; model.train() and
model.eval() switch batch norm and dropout between their two behaviours. The parameter names
are net.<index>.weight / .bias, counting every module in the Sequential.
"""

from torch import nn

from common.errors import InputError
from common.layout import ACTIVATION_MODULES

# ----------------------------------------------------------------------------- architecture

ACTIVATIONS = {name: getattr(nn, module) for name, module in ACTIVATION_MODULES.items()}  # nn.ReLU, ...


# ----------------------------------------------------------------------------- the module


class MLP(nn.Module):
    """With the defaults, equal to nn.Sequential(nn.Linear(784, 128), nn.ReLU(), ..., nn.Linear(64, 10))."""

    def __init__(self, layer_sizes, activation="relu", batchnorm=False, dropout=0.0, sigmoid_output=False):
        super().__init__()
        sizes = list(layer_sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise InputError(f"layer sizes need an input and an output width, every one a "
                             f"positive whole number, got {sizes}")
        if activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {activation!r}: use one of {', '.join(ACTIVATIONS)}")
        if not 0 <= dropout < 1:
            raise InputError(f"dropout probability must be in [0, 1), got {dropout}")
        modules = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            modules.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:  # a hidden layer
                if batchnorm:
                    modules.append(nn.BatchNorm1d(fan_out))
                modules.append(ACTIVATIONS[activation]())
                if dropout > 0:
                    modules.append(nn.Dropout(dropout))
        if sigmoid_output:
            modules.append(nn.Sigmoid())
        self.net = nn.Sequential(*modules)
        self.layer_sizes = sizes

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0]:
            raise InputError(f"inputs have shape {tuple(x.shape)} but the first layer expects "
                             f"(N, {self.layer_sizes[0]}): reshape the data or change the layer sizes")
        if self.training and x.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.net):
            raise InputError(f"batch norm in training mode needs more than 1 value per feature, "
                             f"got input shape {tuple(x.shape)}: use a batch of 2 or more, or eval mode")
        return self.net(x)  # N, C: raw logits unless sigmoid_output
