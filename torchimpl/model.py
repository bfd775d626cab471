"""The network with torch.nn: Linear, ReLU, ..., Linear, raw logits.

Twin: scratch/model.py (init_params, forward, backward). nn.Linear draws its own weights from
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); autograd writes the backward. The parameter names are
net.0.weight, net.0.bias, net.2.weight, ... (ReLUs hold no parameters).
"""

import torch
from torch import nn

from common.errors import InputError

# ----------------------------------------------------------------------------- the module


class MLP(nn.Module):
    """Equal to nn.Sequential(nn.Linear(784, 128), nn.ReLU(), ..., nn.Linear(64, 10))."""

    def __init__(self, layer_sizes):
        super().__init__()
        sizes = list(layer_sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
            raise InputError(f"layer sizes need an input and an output width, every one a "
                             f"positive whole number, got {sizes}")
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.layer_sizes = sizes

    def forward(self, x):
        if x.ndim != 2 or x.shape[1] != self.layer_sizes[0]:
            raise InputError(f"inputs have shape {tuple(x.shape)} but the first layer expects "
                             f"(N, {self.layer_sizes[0]}): reshape the data or change the layer sizes")
        return self.net(x)  # N, C logits: softmax lives inside the loss
