"""Weights across the twins: scratch's {"W1", "b1", ...} <-> torch's state_dict, both ways.

The k-th nn.Linear in MLP.net (net.0, net.2, ... with ReLUs between) holds W{k} as .weight and
b{k} as .bias; both sides store weights (out, in), so a copy needs no transpose. dtype is kept,
and a round trip returns the very same numbers.
"""

import numpy as np
import torch
from torch import nn

from common.errors import InputError

# ----------------------------------------------------------------------------- scratch -> torch


def params_to_state_dict(params, model):
    """A state_dict for `model` (a torchimpl MLP) holding the scratch params, on model's device."""
    linears = [(i, m) for i, m in enumerate(model.net) if isinstance(m, nn.Linear)]
    if len(linears) != len(params) // 2:
        raise InputError(f"the scratch model has {len(params) // 2} linear layers, "
                         f"the torch model {len(linears)}: build both from the same layer sizes")
    state, device = {}, next(model.parameters()).device
    for k, (i, _) in enumerate(linears, start=1):
        for scratch_name, torch_name in ((f"W{k}", "weight"), (f"b{k}", "bias")):
            state[f"net.{i}.{torch_name}"] = torch.from_numpy(np.array(params[scratch_name])).to(device)
    return state


def load_params_into(model, params):
    """Copy scratch params into the torch model, checking every name and shape."""
    state = params_to_state_dict(params, model)
    own = model.state_dict()
    for name, tensor in state.items():
        if name not in own or own[name].shape != tensor.shape:
            expected = tuple(own[name].shape) if name in own else "no such tensor"
            raise InputError(f"tensor {name}: shape {tuple(tensor.shape)} does not fit the torch "
                             f"model ({expected}); build both from the same layer sizes")
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------- torch -> scratch


def parameters_by_scratch_name(model):
    """{"W1": net.0.weight, "b1": net.0.bias, ...}: the model's own Parameters (no copies), in
    scratch order, so that their .grad and their values can be read under scratch's names."""
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    named = {}
    for k, linear in enumerate(linears, start=1):
        named[f"W{k}"], named[f"b{k}"] = linear.weight, linear.bias
    return named


def state_dict_to_params(state_dict):
    """Scratch params from a torchimpl MLP state_dict (keys net.<index>.weight / .bias)."""
    by_index = {}
    for key, tensor in state_dict.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "net" or not parts[1].isdigit():
            raise InputError(f"tensor {key!r} is not part of an MLP state_dict (net.<i>.weight)")
        by_index.setdefault(int(parts[1]), {})[parts[2]] = tensor
    params = {}
    for k, index in enumerate(sorted(by_index), start=1):
        layer = by_index[index]
        if set(layer) != {"weight", "bias"} or layer["weight"].ndim != 2:
            raise InputError(f"layer net.{index} holds {sorted(layer)}, not a Linear's weight and bias")
        params[f"W{k}"] = layer["weight"].detach().cpu().numpy().copy()
        params[f"b{k}"] = layer["bias"].detach().cpu().numpy().copy()
    return params
