"""Weights across the twins: scratch's {"W1", "b1", ...} <-> torch's state_dict, both ways.

The names are mapped by common/layout.py. Both sides store weights (out, in), so a copy needs no
transpose; batch norm's gamma/beta are the BatchNorm1d's weight/bias, and its running statistics
travel as buffers. dtype is kept, and a round trip returns the very same numbers.
"""

import numpy as np
import torch
from torch import nn

from common.errors import InputError
from common.layout import scratch_names, torch_names

BUFFER_KINDS = ("running_mean", "running_var", "num_batches_tracked")


def _layout(model):
    modules = list(model.net)
    return (sum(isinstance(m, nn.Linear) for m in modules),
            any(isinstance(m, nn.BatchNorm1d) for m in modules),
            any(isinstance(m, nn.Dropout) for m in modules))


def scratch_keys(model):
    """{scratch name: state_dict key}: a torchimpl MLP's from its layout; any other module's from
    the map it carries as `scratch_keys` (parity/module.py sets it from the traced structure)."""
    return getattr(model, "scratch_keys", None) or torch_names(*_layout(model))


# ----------------------------------------------------------------------------- scratch -> torch


def params_to_state_dict(params, model, buffers=None):
    """A state_dict for `model` (a torchimpl MLP, or a module carrying scratch_keys) holding the
    scratch arrays, on model's device.

    Batch norm buffers come from `buffers` (scratch.toolbox.model.init_buffers' names); without them the
    model's own running statistics are kept.
    """
    names = scratch_keys(model)
    own, device = model.state_dict(), next(model.parameters()).device
    arrays = {**params, **(buffers or {})}
    state = {}
    for ours, key in names.items():
        if ours not in arrays:
            if ours.startswith(BUFFER_KINDS) and buffers is None:
                state[key] = own[key].clone()
                continue
            raise InputError(f"tensor {key} ({ours}) has no counterpart in the scratch model: "
                             f"build both twins with the same layer sizes and options")
        value = arrays[ours]
        tensor = torch.tensor(value, device=device) if np.ndim(value) == 0 else torch.from_numpy(np.array(value)).to(device)
        if tensor.shape != own[key].shape:
            raise InputError(f"tensor {key} ({ours}): shape {tuple(tensor.shape)} does not fit the "
                             f"torch model's {tuple(own[key].shape)}; build both from the same layer sizes")
        state[key] = tensor
    extra = sorted(set(arrays) - set(names))
    if extra:
        raise InputError(f"scratch array {extra[0]} has no place in the torch model: build both "
                         f"twins with the same layer sizes and options")
    return state


def load_params_into(model, params, buffers=None):
    """Copy scratch params (and batch norm buffers) into the torch model, checking every name and shape."""
    model.load_state_dict(params_to_state_dict(params, model, buffers))
    return model


def parameters_by_scratch_name(model):
    """{"W1": net.0.weight, ...}: the model's own Parameters (no copies), in scratch order, so
    that their .grad and their values can be read under scratch's names."""
    named = dict(model.named_parameters())
    return {ours: named[key] for ours, key in scratch_keys(model).items() if key in named}


def buffers_by_scratch_name(model):
    """{"running_mean1": net.1.running_mean, ...}: batch norm's own buffers (no copies), in
    scratch order; empty without batch norm."""
    named = dict(model.named_buffers())
    return {ours: named[key] for ours, key in scratch_keys(model).items() if key in named}


# ----------------------------------------------------------------------------- torch -> scratch


def _to_scratch(state_dict):
    try:
        names = scratch_names(state_dict)
    except ValueError as err:
        raise InputError(str(err)) from None
    arrays = {}
    for key, ours in names.items():
        tensor = state_dict[key]
        arrays[ours] = int(tensor) if ours.startswith("num_batches_tracked") else tensor.detach().cpu().numpy().copy()
    return arrays


def state_dict_to_params(state_dict):
    """Scratch params (W, b, gamma, beta) from a torchimpl MLP state_dict, in scratch's order."""
    arrays = _to_scratch(state_dict)
    order = [name for name in torch_names(len([n for n in arrays if n.startswith("W")]), True) if name in arrays]
    return {name: arrays[name] for name in order if not name.startswith(BUFFER_KINDS)}
