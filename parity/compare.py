"""The twins side by side: one batch through both, then SGD steps on both, every tensor compared.

Both functions take a scratch params dict and a torchimpl MLP that already hold the same
weights (parity/run.py sets that up) and return Records, one per tensor. Try it:
    python -c "from parity.run import Config, run; print(run(Config(steps=3, limit=256))[0].ok)"
The scratch side is looked up through its modules at call time (scratch.model.forward, ...),
so a test can swap in a broken function and see parity name the tensor it breaks.
Notation: N batch, D in, C classes, K steps.
"""

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from parity.convert import parameters_by_scratch_name
from scratch import losses as scratch_losses
from scratch import model as scratch_model
from scratch import optim as scratch_optim

# ----------------------------------------------------------------------------- the error measure


def errors(ours, theirs):
    """(max |a - b|, max |a - b| / max |b|) for scratch's a and torch's b, both as float.

    Two all-zero tensors agree exactly (0, 0); a nonzero difference from an all-zero b is inf.
    """
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    if a.size == 0:
        return 0.0, 0.0
    abs_err, scale = float(np.abs(a - b).max()), float(np.abs(b).max())
    if not np.isfinite(abs_err):  # a NaN or inf on either side is never agreement
        return float("inf"), float("inf")
    if scale == 0:
        return abs_err, 0.0 if abs_err == 0 else float("inf")
    return abs_err, abs_err / scale


@dataclass
class Record:
    """One tensor's verdict. `checked` names the error the tolerance bounds; tolerance None
    means reported, not checked (float32 weights over a run). `step` is the step of the worst
    error for quantities followed over a run."""

    check: str
    name: str
    dtype: str
    shape: tuple
    max_abs_err: float
    max_rel_err: float
    tolerance: float | None
    checked: str = "max_rel_err"
    step: int | None = None
    note: str = ""
    ok: bool = field(init=False)

    def __post_init__(self):
        error = getattr(self, self.checked)
        self.ok = self.tolerance is None or bool(error <= self.tolerance)


def compare(check, name, ours, theirs, tolerance, dtype):
    """A Record for scratch's `ours` against torch's `theirs` (arrays or tensors)."""
    theirs = theirs.detach().cpu().numpy() if isinstance(theirs, torch.Tensor) else theirs
    abs_err, rel_err = errors(ours, theirs)
    shape = tuple(np.shape(theirs))
    note = "" if np.shape(ours) == shape else f"shape mismatch: scratch {np.shape(ours)}"
    return Record(check, name, dtype, shape, abs_err, rel_err, tolerance, note=note)


# ----------------------------------------------------------------------------- one batch


def compare_one_batch(params, model, X, y, tolerance, check="one batch"):
    """Forward and backward of one batch (X (N, D), y (N,)) through both twins.

    Records: logits, loss, dW1, db1, ..., dX (the gradient with respect to the input).
    Neither side's weights change.
    """
    dtype = str(X.dtype)
    logits, caches = scratch_model.forward(params, X)  # N, C
    loss, dlogits = scratch_losses.softmax_cross_entropy(logits, y)
    grads, dX = scratch_model.backward(dlogits, caches)

    x = torch.from_numpy(X).clone().requires_grad_(True)  # N, D; a leaf, so x.grad is dL/dX
    model.zero_grad(set_to_none=True)
    logits_t = model(x)  # N, C
    loss_t = F.cross_entropy(logits_t, torch.from_numpy(y))
    loss_t.backward()

    records = [compare(check, "logits", logits, logits_t, tolerance, dtype),
               compare(check, "loss", loss, loss_t, tolerance, dtype)]
    for name, p in parameters_by_scratch_name(model).items():
        records.append(compare(check, f"d{name}", grads.get(name), p.grad, tolerance, dtype))
    records.append(compare(check, "dX", dX, x.grad, tolerance, dtype))
    return records


# ----------------------------------------------------------------------------- SGD steps


class _Worst:
    """The largest error of one quantity over the steps, and the step where it happened."""

    def __init__(self):
        self.abs_err, self.rel_err, self.step = 0.0, 0.0, None

    def update(self, abs_err, rel_err, step):
        if self.step is None or rel_err > self.rel_err:
            self.rel_err, self.step = rel_err, step
        self.abs_err = max(self.abs_err, abs_err)


def compare_training(params, model, X, y, batches, lr, tolerance, drift_every=100, check=None, **sgd):
    """Run SGD(lr, **sgd) on both twins over the same batches (a list of index arrays into X, y).

    sgd: momentum, weight_decay, nesterov, passed to scratch.optim.SGD and torch.optim.SGD alike.
    After every step each weight is compared; its record holds the worst step. The K losses
    are compared as one (K,) tensor, so each step's loss error is measured against the loss
    scale (the largest loss): a loss that training drives towards 0 has no relative accuracy
    of its own, its rounding error stays that of the logits it came from.
    Also returns the drift: every `drift_every` steps and after the last, the largest
    normwise error over all weights, and the tensor it was in.
    Updates `params` and `model` in place.
    """
    dtype, K = str(X.dtype), len(batches)
    check = check or f"{K} SGD steps"
    optimizer = scratch_optim.SGD(params, lr=lr, **sgd)
    model_params = parameters_by_scratch_name(model)
    optimizer_t = torch.optim.SGD(model.parameters(), lr=lr, **sgd)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    worst = {name: _Worst() for name in model_params}
    losses, losses_t = np.zeros(K), np.zeros(K)  # K   the twins' loss at every step
    drift = []
    for step, idx in enumerate(batches, start=1):
        logits, caches = scratch_model.forward(params, X[idx])  # B, C
        losses[step - 1], dlogits = scratch_losses.softmax_cross_entropy(logits, y[idx])
        grads, _ = scratch_model.backward(dlogits, caches)
        optimizer.step(grads)

        idx_t = torch.from_numpy(idx)
        optimizer_t.zero_grad(set_to_none=True)
        loss_t = F.cross_entropy(model(X_t[idx_t]), y_t[idx_t])
        loss_t.backward()
        optimizer_t.step()
        losses_t[step - 1] = loss_t.item()

        step_worst = (0.0, 0.0, None)  # (rel, abs, name) over this step's weights
        with torch.no_grad():
            for name, p in model_params.items():
                abs_err, rel_err = errors(params[name], p.numpy())
                worst[name].update(abs_err, rel_err, step)
                step_worst = max(step_worst, (rel_err, abs_err, name), key=lambda t: t[0])
        if step % drift_every == 0 or step == K:
            drift.append({"step": step, "max_rel_err": step_worst[0], "max_abs_err": step_worst[1],
                          "tensor": step_worst[2]})

    records = [Record(check, name, dtype, tuple(model_params[name].shape), w.abs_err, w.rel_err,
                      tolerance, step=w.step) for name, w in worst.items()]
    loss_record = compare(check, "loss (every step)", losses, losses_t, tolerance, dtype)
    loss_record.step = int(np.abs(losses - losses_t).argmax()) + 1
    records.append(loss_record)
    return records, drift
