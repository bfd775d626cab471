"""The twins side by side: one batch through both, then training steps on both, every tensor compared.

Both functions take a scratch params dict (and batch norm buffers) and a torch MLP that
already hold the same weights, the torch one with its dropout masks handed in (parity/run.py
sets that up with twins()), and return Records, one per tensor. Try it:
    python -c "from parity.run import Config, run; print(run(Config(steps=3, limit=256))[0].ok)"
The scratch side is looked up through its modules at call time (scratch.toolbox.model.forward, ...),
so a test can swap in a broken function and see parity name the tensor it breaks; one step
of each twin is written in parity/steps.py.
Notation: N batch, D in, C classes, K steps.
"""

import copy
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from common.layout import OPTIMIZER_CLASSES
from parity import steps as twin_steps
from parity.convert import parameters_by_scratch_name
from scratch.toolbox.model import Arch

# ----------------------------------------------------------------------------- the error measure


def errors(ours, theirs, scale=None):
    """(max |a - b|, max |a - b| / max |b|) for scratch's a and torch's b, both as float.

    scale: divide by this instead of max |b| (a tensor that is zero in exact arithmetic is
    measured against its layer, see biases_ahead_of_batchnorm). Two all-zero tensors agree
    exactly (0, 0); a nonzero difference from an all-zero b is inf.
    """
    return _errors(ours, theirs, scale)[:2]


def _errors(ours, theirs, scale=None):
    """errors() and the scale it divided by: (abs, rel, scale)."""
    a, b = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf"), float("nan")
    if a.size == 0:
        return 0.0, 0.0, 0.0
    abs_err = float(np.abs(a - b).max())
    scale = float(np.abs(b).max()) if scale is None else float(scale)
    if not np.isfinite(abs_err):  # a NaN or inf on either side is never agreement
        return float("inf"), float("inf"), scale
    if scale == 0:
        return abs_err, 0.0 if abs_err == 0 else float("inf"), scale
    return abs_err, abs_err / scale, scale


def biases_ahead_of_batchnorm(params):
    """{"b1": "W1", ...}: each Linear bias that a batch norm follows, with its layer's weight.

    Batch norm subtracts the batch mean, so b_i changes nothing in training and its gradient
    is zero in exact arithmetic: each twin returns the rounding noise of N terms that cancel,
    ~1e-17, and so do the optimizer buffers built from it. Two noises have no relative
    accuracy, so these are measured against their layer, (W_i, b_i) as one vector: the
    error divided by the largest entry of W_i's counterpart and b_i's together.
    """
    return {f"b{name[len('gamma'):]}": f"W{name[len('gamma'):]}" for name in params if name.startswith("gamma")}


AHEAD_OF_BATCHNORM = "zero in exact arithmetic: rel to its layer (W, b)"
NOISE_DRIVEN = "moved by rounding noise: noise tolerance"  # a bias ahead of batch norm under Adam


@dataclass
class Record:
    """One tensor's verdict. `checked` names the error the tolerance bounds; tolerance None
    means reported, not checked (float32 weights over a run). `step` is the step of the worst
    error for quantities followed over a run; `scale` what max_rel_err divides by (max |torch|
    at that step, or the layer's for a tensor zero in exact arithmetic)."""

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
    scale: float | None = None
    ok: bool = field(init=False)

    def __post_init__(self):
        error = getattr(self, self.checked)
        self.ok = self.tolerance is None or bool(error <= self.tolerance)


def compare(check, name, ours, theirs, tolerance, dtype, scale=None, note=""):
    """A Record for scratch's `ours` against torch's `theirs` (arrays or tensors)."""
    theirs = theirs.detach().cpu().numpy() if isinstance(theirs, torch.Tensor) else theirs
    abs_err, rel_err, scale = _errors(ours, theirs, scale)
    shape = tuple(np.shape(theirs))
    if np.shape(ours) != shape:
        note = f"shape mismatch: scratch {np.shape(ours)}"
    return Record(check, name, dtype, shape, abs_err, rel_err, tolerance, note=note, scale=scale)


def _layer_scale(theirs, name, partners):
    """max |b| over name's tensor and its partner's (torch's side), or None without a partner."""
    if name not in partners or theirs.get(partners[name]) is None or theirs.get(name) is None:
        return None
    return max(float(np.abs(twin_steps.as_array(theirs[key])).max(initial=0)) for key in (name, partners[name]))


# ----------------------------------------------------------------------------- one batch


def output_name(arch):
    """What the network's last layer gives: probabilities under a sigmoid, otherwise logits."""
    return "probabilities" if arch.sigmoid_output else "logits"


def compare_one_batch(params, model, X, y, tolerance, check="one batch", *, arch=Arch(), buffers=None,
                      masks=None, loss="ce"):
    """Forward and backward of one batch (X (N, D), y (N,)) through both twins, in training mode.

    Records: the outputs, the loss, every parameter gradient (dW1, db1, dgamma1, dbeta1, ...)
    and dX (the gradient with respect to the input); with batch norm also each running_mean_i
    and running_var_i after this training forward, then the evaluation-mode outputs of the same
    batch, which use them. masks: hidden layer i's dropout mask at masks[i - 1] (draw_masks).
    Both twins are left as they were: the check runs on copies of the buffers and the model.
    """
    dtype = str(X.dtype)
    buffers = copy.deepcopy(buffers or {})
    model = copy.deepcopy(model)
    out, value, grads, dX = twin_steps.scratch_pass(params, buffers, arch, loss, X, y, masks)  # N, C
    out_t, value_t, dX_t = twin_steps.torch_pass(model, loss, X, y, masks, input_grad=True)

    records = [compare(check, output_name(arch), out, out_t, tolerance, dtype),
               compare(check, "loss", value, value_t, tolerance, dtype)]
    grads_t = {name: p.grad for name, p in parameters_by_scratch_name(model).items()}
    ahead = biases_ahead_of_batchnorm(params)
    for name, g in grads_t.items():
        records.append(compare(check, f"d{name}", grads.get(name), g, tolerance, dtype,
                               _layer_scale(grads_t, name, ahead), AHEAD_OF_BATCHNORM * (name in ahead)))
    records.append(compare(check, "dX", dX, dX_t, tolerance, dtype))
    running_t = twin_steps.torch_buffers(model)
    if running_t:
        for name, b in running_t.items():
            records.append(compare(check, name, buffers.get(name), b, tolerance, dtype))
        records.append(compare(check, "outputs (eval mode)", twin_steps.scratch_eval(params, buffers, arch, X),
                               twin_steps.torch_eval(model, X), tolerance, dtype))
    return records


# ----------------------------------------------------------------------------- training steps


class _Worst:
    """The largest error of one quantity over the steps, and the step where it happened."""

    def __init__(self, shape):
        self.shape, self.abs_err, self.rel_err, self.step, self.note = shape, 0.0, 0.0, None, ""
        self.scale = None

    def update(self, abs_err, rel_err, step, scale=None):
        if self.step is None or rel_err > self.rel_err:
            self.rel_err, self.step, self.scale = rel_err, step, scale
        self.abs_err = max(self.abs_err, abs_err)


def _follow(worst, ours, theirs, step, partners=None):
    """Compare {name: array} against {name: tensor} at this step; a name missing on either
    side is an infinite error; a name in partners is measured against its layer (see
    biases_ahead_of_batchnorm). Returns the step's (rel, abs, name) of the largest error."""
    step_worst = (0.0, 0.0, None)
    for name in [*theirs, *(n for n in ours if n not in theirs)]:
        a, b = ours.get(name), theirs.get(name)
        record = worst.setdefault(name, _Worst(tuple(np.shape(b if b is not None else a))))
        if a is None or b is None:
            abs_err = rel_err = scale = float("inf")
            record.note = f"missing on the {'scratch' if a is None else 'torch'} side"
        else:
            abs_err, rel_err, scale = _errors(a, twin_steps.as_array(b), _layer_scale(theirs, name, partners or {}))
            if name in (partners or {}) and not record.note:  # a missing tensor keeps its note
                record.note = AHEAD_OF_BATCHNORM
        record.update(abs_err, rel_err, step, scale)
        step_worst = max(step_worst, (rel_err, abs_err, name), key=lambda t: t[0])
    return step_worst


def training_check(K, optimizer="sgd"):
    return f"{K} {OPTIMIZER_CLASSES[optimizer]} steps"


def _non_finite(loss, weights, refused=None):
    """What went inf or nan on one twin in a step: its loss, else the update (refused: the error
    torch raised instead of stepping), else the first weight the update left non-finite; None
    when all is finite."""
    if not np.isfinite(loss):
        return f"the loss is {float(loss)}"
    if refused is not None:
        return f"its update raised {refused}"
    for name, w in weights.items():
        w = twin_steps.as_array(w)
        if not np.isfinite(w).all():
            return f"the update left {name} {'nan' if np.isnan(w).any() else 'inf'}"
    return None


def _torch_step(optimizer):
    """optimizer.step(); None, or the error where torch refuses a step size beyond its dtype
    (lr 1e39 in float32: "value cannot be converted ... without overflow")."""
    try:
        optimizer.step()
    except RuntimeError as err:
        if "without overflow" not in str(err):
            raise
        return f"RuntimeError: {err}"
    return None


def divergence_note(diverged):
    """'the loss is nan on both twins', or each twin's own account ('scratch: ...; torch: ...')."""
    ours, theirs = diverged["scratch"], diverged["torch"]
    if ours == theirs:
        return f"{ours} on both twins"
    return "; ".join(f"{twin}: {what or 'still finite'}" for twin, what in (("scratch", ours), ("torch", theirs)))


def compare_training(params, model, X, y, batches, lr, tolerance, drift_every=100, check=None, *,
                     arch=Arch(), buffers=None, masks=None, loss="ce", optimizer="sgd", schedule="none",
                     losses_out=None, diverged_out=None,
                     steps_per_epoch=None, noise_tolerance=None, **hyper):
    """Train both twins over the same batches (a list of index arrays into X, y) and compare.

    optimizer 'sgd', 'adam' or 'adamw' with lr and hyper (momentum, nesterov, weight_decay), built
    as the training programs build it; schedule 'cosine' steps both twins' CosineAnnealingLR once
    every steps_per_epoch steps (default: the whole run is one epoch), T_max = the epochs run.
    masks: one entry per step (an iterable, drawn lazily if it likes), each the list of hidden
    layers' dropout masks for that step's batch.
    After every step each weight, each running statistic (batch norm) and each optimizer buffer
    (momentum_buffer, exp_avg, exp_avg_sq) is compared; its record holds the worst step. The K
    losses are compared as one (K,) tensor, so each step's loss error is measured against the
    loss scale (the largest loss): a loss that training drives towards 0 has no relative
    accuracy of its own. Likewise the K learning rates under a schedule.
    noise_tolerance (default: tolerance) bounds the tensors that rounding noise moves: each
    bias ahead of a batch norm and each running_mean, which averages that bias in. Their
    gradient is zero in exact arithmetic, and Adam, dividing by its RMS, steps on the noise
    (parity/tolerances.py gives the figures).
    Also returns the drift: every `drift_every` steps and after the last, the largest
    normwise error over all weights, and the tensor it was in.
    Training stops at the first step where either twin's loss or weights turn inf or nan (or
    torch refuses the update): a failing "diverged" record names the step and each twin's
    account, diverged_out (a dict) receives {"step", "scratch", "torch"}, and the other records
    cover the steps before it.
    Updates `params`, `buffers` and `model` in place.
    """
    dtype, K = str(X.dtype), len(batches)
    check = check or training_check(K, optimizer)
    ours, theirs = twin_steps.make_optimizers(params, model, optimizer, lr, **hyper)
    schedule_ours, schedule_theirs = twin_steps.make_schedules(ours, theirs, schedule, K, steps_per_epoch or K)
    model_params = parameters_by_scratch_name(model)
    ahead = biases_ahead_of_batchnorm(params)
    partners = {f"{b} {key}": f"{w} {key}" for b, w in ahead.items() for key in twin_steps.STATE_KEYS}
    noisy = {*ahead, *(name for name in buffers or {} if name.startswith("running_mean"))}
    masks = iter(masks) if masks is not None else itertools.repeat(None)
    weights, followed = {}, {}  # name -> _Worst: the weights; running statistics and optimizer state
    losses, losses_t = np.zeros(K), np.zeros(K)  # K   the twins' loss at every step
    lrs, lrs_t = np.zeros(K), np.zeros(K)  # K   the learning rate after every step
    drift, diverged = [], None
    for step, idx in enumerate(batches, start=1):
        step_masks = next(masks)
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported below, not warned
            _, losses[step - 1], grads, _ = twin_steps.scratch_pass(params, buffers, arch, loss, X[idx], y[idx],
                                                                    step_masks, input_grad=False)
            ours.step(grads)
        _, loss_t, _ = twin_steps.torch_pass(model, loss, X[idx], y[idx], step_masks)
        refused = _torch_step(theirs)
        losses_t[step - 1] = loss_t.item()
        with torch.no_grad():
            accounts = (_non_finite(losses[step - 1], params), _non_finite(losses_t[step - 1], model_params, refused))
        if accounts != (None, None):  # the weights were finite before this step: it is the first
            diverged = {"step": step, "scratch": accounts[0], "torch": accounts[1]}
            break
        if schedule_ours is not None and step % (steps_per_epoch or K) == 0:  # the end of an epoch
            schedule_ours.step()
            schedule_theirs.step()
        lrs[step - 1], lrs_t[step - 1] = ours.lr, theirs.param_groups[0]["lr"]

        with torch.no_grad():
            step_worst = _follow(weights, params, model_params, step)
            _follow(followed, twin_steps.scratch_running_stats(buffers), twin_steps.torch_buffers(model), step)
            _follow(followed, twin_steps.scratch_state(ours), twin_steps.torch_state(theirs, model), step, partners)
        if step % drift_every == 0 or step == K:
            drift.append({"step": step, "max_rel_err": step_worst[0], "max_abs_err": step_worst[1],
                          "tensor": step_worst[2]})

    done = K if diverged is None else diverged["step"] - 1  # the steps both twins ended finite
    noise_tolerance = tolerance if noise_tolerance is None else noise_tolerance
    loose = noisy if noise_tolerance != tolerance else set()
    records = [Record(check, name, dtype, w.shape, w.abs_err, w.rel_err,
                      noise_tolerance if name in loose else tolerance, step=w.step,
                      note=w.note or NOISE_DRIVEN * (name in loose), scale=w.scale)
               for name, w in {**weights, **followed}.items()]
    if losses_out is not None:  # each twin's loss at every step run, for a plot
        run = K if diverged is None else diverged["step"]
        losses_out.update(scratch=losses[:run], torch=losses_t[:run])
    series = [("loss (every step)", losses[:done], losses_t[:done])]
    series += [("lr (every step)", lrs[:done], lrs_t[:done])] if schedule_ours is not None else []
    for name, a, b in series if done else []:
        record = compare(check, name, a, b, tolerance, dtype)
        record.step = int(np.abs(a - b).argmax()) + 1
        records.append(record)
    if diverged is not None:
        records.append(Record(check, "diverged", dtype, (), float("inf"), float("inf"), 0.0, checked="max_abs_err",
                              step=diverged["step"], note=divergence_note(diverged)))
        if diverged_out is not None:
            diverged_out.update(diverged)
    return records, drift
