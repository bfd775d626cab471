"""One training step written for each twin, with everything random handed in from outside.

parity/compare.py runs these side by side. A scratch step is forward, loss, backward,
optimizer.step(grads); a torch step is model(x), loss_fn, loss.backward(), optimizer.step().
Both use the training programs' own pieces (scratch/train.py and torchimpl/train.py: LOSSES,
loss_targets, make_optimizer), so a flag means here what it means there. Dropout is the one
random piece: masks are drawn once here (scratch.toolbox.layers.dropout_mask) and handed to both, the
torch side through GivenMask modules swapped into a copy of the model. Try it:
    python -c "from parity.steps import GivenMask; print(GivenMask(0.2))"
Notation: N batch, D in, H hidden, C classes.
"""

import copy
import math

import numpy as np
import torch
from torch import nn

from common.layout import OPTIMIZER_CLASSES
from parity.convert import buffers_by_scratch_name, parameters_by_scratch_name
from scratch.toolbox import layers as scratch_layers
from scratch.toolbox import model as scratch_model
from scratch.toolbox import schedules as scratch_schedules
from scratch import train as scratch_train
from torchimpl import train as torch_train

STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq")  # torch's optimizer.state[p] keys

# ----------------------------------------------------------------------------- dropout masks


class GivenMask(nn.Dropout):
    """nn.Dropout(p) with its mask handed in: x * mask in training, the identity in eval mode.

    nn.Dropout draws bernoulli(1 - p) / (1 - p) itself on every call; this module multiplies by
    `self.mask`, an (N, H) tensor set before each forward (set_masks), so that torch sees the
    very mask the scratch twin uses. It stays an nn.Dropout, so the model's layout (and every
    state_dict key) is unchanged.
    """

    def __init__(self, p):
        super().__init__(p)
        self.mask = None

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        if self.mask is None or self.mask.shape != x.shape:
            got = None if self.mask is None else tuple(self.mask.shape)
            raise ValueError(f"GivenMask: a mask of shape {tuple(x.shape)} is needed, got {got}")
        return x * self.mask  # N, H   kept units scaled by 1/(1-p), dropped ones 0


def dropout_names(model):
    """Qualified names of the model's nn.Dropout modules in forward order: a torchimpl MLP's in
    the order of .net; any other module's from the `dropout_modules` it carries (the order its
    traced forward calls them, set by parity/module.py)."""
    order = getattr(model, "dropout_modules", None)
    if order is not None:
        return list(order)
    return [f"net.{index}" for index, module in enumerate(model.net) if isinstance(module, nn.Dropout)]


def with_given_masks(model):
    """A deep copy of the model with every nn.Dropout replaced by a GivenMask.

    The original keeps its nn.Dropout (torchimpl, or the reader's module, is untouched); parity
    trains the copy.
    """
    twin = copy.deepcopy(model)
    for name in dropout_names(twin):
        module = twin.get_submodule(name)
        if not isinstance(module, GivenMask):
            parent, _, attribute = name.rpartition(".")
            setattr(twin.get_submodule(parent), attribute, GivenMask(module.p))
    return twin


def set_masks(model, masks):
    """Hand hidden layer i's mask masks[i - 1] (NumPy, already scaled) to the i-th GivenMask."""
    given = [module for module in map(model.get_submodule, dropout_names(model)) if isinstance(module, GivenMask)]
    if given and masks is None:
        raise ValueError("the model has dropout but no masks were given: draw them with draw_masks")
    for module, mask in zip(given, masks or []):
        module.mask = torch.from_numpy(mask)


def draw_masks(rng, hidden_widths, N, p, dtype):
    """One (N, H_i) inverted-dropout mask per hidden layer from rng, or None without dropout."""
    if p == 0:
        return None
    return [scratch_layers.dropout_mask(rng, (N, H), p, dtype) for H in hidden_widths]


# ----------------------------------------------------------------------------- forward and backward


def scratch_pass(params, buffers, arch, loss, X, y, masks, input_grad=True):
    """Training-mode forward, loss and backward on the scratch twin.

    Returns (out (N, C), loss value, grads, dX (N, D), or None without input_grad, as a
    training step runs it); batch norm's running statistics in
    `buffers` are updated, as a training forward does.
    """
    if arch.dropout > 0 and masks is None:
        raise ValueError("dropout needs its masks: draw them with draw_masks and hand the same to both twins")
    out, caches = scratch_model.forward(params, X, arch, buffers, train=True, masks=masks)  # N, C
    value, dout = scratch_train.LOSSES[loss](out, scratch_train.loss_targets(loss, y, out))
    grads, dX = scratch_model.backward(dout, caches, input_grad=input_grad)
    return out, value, grads, dX


def torch_pass(model, loss, X, y, masks, input_grad=False):
    """Training-mode forward, loss and backward on the torch twin; the .grad fields are set.

    Returns (out (N, C), loss, dX or None); with input_grad the input is a leaf whose .grad
    is dL/dX.
    """
    model.train()
    set_masks(model, masks)
    x = torch.from_numpy(X)  # N, D
    if input_grad:
        x = x.clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(x)  # N, C
    value = torch_train.LOSSES[loss]()(out, torch_train.loss_targets(loss, torch.from_numpy(y), out))
    value.backward()
    return out, value, x.grad


def scratch_eval(params, buffers, arch, X):
    """Evaluation-mode outputs (N, C): running statistics, no dropout."""
    return scratch_model.forward(params, X, arch, buffers, train=False)[0]


@torch.no_grad()
def torch_eval(model, X):
    """Evaluation-mode outputs (N, C) of the torch twin; the model is left in eval mode."""
    model.eval()
    return model(torch.from_numpy(X))


# ----------------------------------------------------------------------------- optimizers


def make_optimizers(params, model, optimizer, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """The same optimizer on both twins, built as the training programs build it."""
    ours = scratch_train.make_optimizer(optimizer, params, lr, momentum, nesterov, weight_decay)
    theirs = torch_train.make_optimizer(optimizer, model.parameters(), lr, momentum, nesterov, weight_decay)
    return ours, theirs


def make_schedules(ours, theirs, schedule, steps, steps_per_epoch):
    """Cosine annealing on both, T_max = the epochs `steps` spans; (None, None) for 'none'."""
    if schedule == "none":
        return None, None
    T_max = math.ceil(steps / steps_per_epoch)
    return (scratch_schedules.CosineAnnealingLR(ours, T_max),
            torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max))


def scratch_state(optimizer):
    """{"W1 momentum_buffer": array, "W1 exp_avg": ..., ...}: the scratch optimizer's buffers."""
    found = {}
    for name, state in optimizer.state.items():
        items = state.items() if isinstance(state, dict) else [("momentum_buffer", state)]
        found.update({f"{name} {key}": value for key, value in items if key in STATE_KEYS})
    return found


def torch_state(optimizer, model):
    """The same names for torch's optimizer.state[param] tensors."""
    found = {}
    for name, p in parameters_by_scratch_name(model).items():
        state = optimizer.state.get(p, {})
        found.update({f"{name} {key}": state[key] for key in STATE_KEYS if state.get(key) is not None})
    return found


def torch_buffers(model):
    """Batch norm's running_mean_i / running_var_i under scratch's names (no step counts)."""
    return {name: b for name, b in buffers_by_scratch_name(model).items()
            if not name.startswith("num_batches_tracked")}


def scratch_running_stats(buffers):
    return {name: b for name, b in (buffers or {}).items() if not name.startswith("num_batches_tracked")}


def as_array(value):
    """A torch tensor (or anything array-like) as a NumPy array, without a copy where possible."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
