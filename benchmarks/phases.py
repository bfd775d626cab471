"""Where an epoch's time goes: a measured per-phase profile of each backend, and a CUDA prediction.

Part of `python -m benchmarks`; benchmarks/runner.py attaches one profile to each timed record.
The phases: data gather, forward matrix products, elementwise work (bias, activation, masks,
the bias gradient), loss, backward matrix products, optimizer; and `left`, the record's epoch
minus those phases: Python's calls and the framework's dispatch.

- NumPy: the core's step (scratch/mlp.py) copied with a clock (time.perf_counter) around each
  phase, the same arithmetic in the same order. numpy-minimal and numpy-toolbox run that
  arithmetic too, so they carry the same measured phases and their own `left`: the difference
  in `left` is the difference in Python calls.
- torch: torch.profiler over one epoch of a fresh backend on the profiled images (after one
  unprofiled epoch), each operator's self time assigned to a phase by the operator and the
  frame it runs in (the DataLoader, autograd's backward, the optimizer, the loss).
  The operator count per step counts the operators that do work (no views, no allocations):
  on CUDA each is a kernel launch. On CUDA the kernels are counted from the trace itself.
- Profiles run on PROFILE_IMAGES images at most (a fraction of the epoch) and are scaled to
  60,000 images, like the epoch times.
"""

import math
import time

import numpy as np
import torch

from benchmarks.backends import NumpyBackend, TorchLoaderBackend, TorchResidentBackend
from scratch import mlp

PHASES = ["gather", "forward products", "elementwise", "loss", "backward products", "optimizer"]
PROFILE_IMAGES = 6400  # 100 steps at batch 64: the phases' shares settle within a few percent

# The launch-bound prediction of an eager CUDA epoch: every operator of a step is one kernel,
# issued one after the other by the CPU, each costing LAUNCH_US: a CUDA launch takes about 5 µs
# of the CPU (CUDA's launch latency), and eager PyTorch's dispatch before it brings an operator
# to about 10 µs on a server CPU. The GPU's own arithmetic at batch 64 is far shorter.
LAUNCH_US = (5.0, 10.0)

# ----------------------------------------------------------------------------- how much to profile


def profile_images(n_images, batch_size):
    """Whole batches, at most PROFILE_IMAGES and at most a quarter of the epoch, at least one batch."""
    size = min(PROFILE_IMAGES, max(batch_size, n_images // 4), n_images)
    return max(size // batch_size, 1) * batch_size if size >= batch_size else size


# ----------------------------------------------------------------------------- numpy


def numpy_phases(X, y, params, batch_size, lr, seed):
    """Seconds per phase over one shuffled pass of (X, y): the core's step with a clock per phase.
    Returns (seconds per phase, the trained parameters: the core's own epoch's, bit for bit)."""
    clock, spent = time.perf_counter, dict.fromkeys(PHASES, 0.0)
    model = {k: np.array(v, copy=True) for k, v in params.items()}
    n_layers, rng = len(model) // 2, np.random.default_rng(seed)
    with np.errstate(all="ignore"):  # a diverging run is reported by the step check, not here
        t0 = clock()
        order = rng.permutation(len(X))
        spent["gather"] += clock() - t0
        for start in range(0, len(X), batch_size):
            t0 = clock()
            idx = order[start:start + batch_size]
            h, yb = X[idx], y[idx]  # B, D and B
            t1 = clock()
            spent["gather"] += t1 - t0
            inputs, pre = [], []
            for i in range(1, n_layers + 1):
                t0 = clock()
                z = h @ model[f"W{i}"].T  # B, H_i
                t1 = clock()
                z = z + model[f"b{i}"]  # what linear_forward's "+ b" does
                inputs.append(h), pre.append(z)
                h = np.maximum(z, 0) if i < n_layers else z
                t2 = clock()
                spent["forward products"] += t1 - t0
                spent["elementwise"] += t2 - t1
            t0 = clock()
            _, dh = mlp.softmax_cross_entropy(h, yb)  # B, C
            spent["loss"] += clock() - t0
            grads = {}
            for i in range(n_layers, 0, -1):
                t0 = clock()
                if i < n_layers:
                    dh = dh * (pre[i - 1] > 0)  # relu_backward
                grads[f"b{i}"] = dh.sum(axis=0)
                t1 = clock()
                grads[f"W{i}"] = dh.T @ inputs[i - 1]
                if i > 1:  # no dL/dX, as in training
                    dh = dh @ model[f"W{i}"]
                t2 = clock()
                spent["elementwise"] += t1 - t0
                spent["backward products"] += t2 - t1
            t0 = clock()
            for name, p in model.items():
                p -= lr * grads[name]
            spent["optimizer"] += clock() - t0
    return spent, model


# ----------------------------------------------------------------------------- torch

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
ELEMENTWISE = {"aten::clamp_min", "aten::relu", "aten::threshold_backward", "aten::sum", "aten::fill_",
               "aten::copy_", "aten::add", "aten::mul", "aten::where", "aten::add_"}
LOSS_FRAMES = ("aten::cross_entropy_loss", "aten::ones_like", "aten::add_", "aten::detach",
               "NllLossBackward0", "LogSoftmaxBackward0")
GATHER_FRAMES = ("enumerate(DataLoader)", "aten::index_select", "aten::randperm", "aten::slice",
                 "aten::to", "aten::index")
# Operators that launch no kernel: views, allocations, and wrappers that only call other operators.
NO_WORK = {"aten::" + name for name in (
    "as_strided t transpose view expand select slice unsqueeze squeeze permute reshape resolve_conj "
    "resolve_neg detach alias empty empty_like empty_strided resize_ _unsafe_view lift_fresh "
    "scalar_tensor linear relu cross_entropy_loss log_softmax nll_loss_nd nll_loss to _to_copy "
    "ones_like matmul numpy_T contiguous zeros_like").split()}


def _frame(event):
    """The outermost frame the event runs in: its top-level ancestor's name (its own if none)."""
    while event.cpu_parent is not None:
        event = event.cpu_parent
    return event.name


def phase_of(name, frame):
    """The phase of an operator `name` running in `frame`, or None for dispatch (counted in left)."""
    backward = "Backward" in frame or frame.startswith("autograd::engine")
    if frame.startswith("Optimizer."):
        return "optimizer"
    if any(f in frame for f in LOSS_FRAMES):
        return "loss"
    if frame.startswith(GATHER_FRAMES):
        return "gather"
    if name in MATMULS:
        return "backward products" if backward else "forward products"
    if name in ELEMENTWISE:
        return "elementwise"
    return None


def torch_phases(cls, device, X, y, params, batch_size, lr, seed):
    """(seconds per phase, {"ops": work operators per step, "optimizer_ops": those of the
    optimizer, "kernels": CUDA kernels per step or None}) over one epoch of (X, y) under
    torch.profiler, after one unprofiled epoch."""
    from torch.profiler import ProfilerActivity, profile

    backend = cls(X, y, params, batch_size, lr, seed, device)
    backend.epoch()
    backend.sync()
    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        backend.epoch()
        backend.sync()
    spent, work, optimizer_work, kernels = dict.fromkeys(PHASES, 0.0), 0, 0, 0
    for event in prof.events():
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kernels += 1  # a kernel or memory operation on the GPU's timeline
            continue
        phase = phase_of(event.name, _frame(event))
        if phase is not None:
            spent[phase] += event.self_cpu_time_total / 1e6
        does_work = event.name.startswith("aten::") and event.name not in NO_WORK
        work, optimizer_work = work + does_work, optimizer_work + (does_work and phase == "optimizer")
    steps = math.ceil(len(X) / batch_size)
    return spent, {"ops": work / steps, "optimizer_ops": optimizer_work / steps,
                   "kernels": kernels / steps if cuda else None}


# ----------------------------------------------------------------------------- the record's profile


def cuda_launches(counts):
    """Kernels a CUDA step launches: counted on the GPU where it ran there; from a CPU profile, the
    work operators with the optimizer's as one (CUDA's SGD is fused or foreach: one launch)."""
    if counts.get("kernels") is not None:
        return counts["kernels"]
    return counts["ops"] - counts["optimizer_ops"] + 1


def launch_prediction(launches_per_step, steps):
    """[low, high] seconds of an eager CUDA epoch bound by launching its kernels one by one."""
    return [launches_per_step * steps * us / 1e6 for us in LAUNCH_US]


def attach(record, spent, images, scale, steps, method, counts=None):
    """Add record["profile"]: the phases scaled to the record's epoch of `steps` steps, `left`
    (the epoch minus the phases), and for torch the counts and the launch-bound prediction."""
    phases = {name: seconds * scale for name, seconds in spent.items()}
    profile = {"images": images, "method": method, "phases_s": phases,
               "left_s": record["median_s"] - sum(phases.values())}
    if counts is not None:
        launches = cuda_launches(counts)
        profile.update(ops_per_step=counts["ops"], optimizer_ops_per_step=counts["optimizer_ops"],
                       kernels_per_step=counts["kernels"], cuda_launches_per_step=launches,
                       cuda_prediction_s=launch_prediction(launches, steps), launch_us=list(LAUNCH_US))
    record["profile"] = profile
    return profile


class Profiler:
    """The per-phase profile of each record of one configuration, on its first profile_images
    images; NumPy's phases measured once and shared by the NumPy backends, which run the same
    arithmetic. A backend of another kind is noted as not profiled; a failed profile is noted,
    never fatal."""

    def __init__(self, X, y, params, batch_size, lr, seed, full_epoch):
        m = profile_images(len(X), batch_size)
        self.X, self.y, self.images, self.args = X[:m], y[:m], m, (params, batch_size, lr, seed)
        self.scale, self.steps, self.numpy = full_epoch / m, math.ceil(full_epoch / batch_size), None

    def profile(self, record, cls, device):
        try:
            if issubclass(cls, NumpyBackend):
                if self.numpy is None:
                    self.numpy, _ = numpy_phases(self.X, self.y, *self.args)
                method = "the core's step with a clock around each phase"
                attach(record, self.numpy, self.images, self.scale, self.steps, method)
            elif issubclass(cls, (TorchLoaderBackend, TorchResidentBackend)):  # and their subclasses
                spent, counts = torch_phases(cls, device, self.X, self.y, *self.args)
                attach(record, spent, self.images, self.scale, self.steps, "torch.profiler operator self times",
                       counts)
            else:
                record["profile"] = {"skipped": f"{record['backend']} offers no per-phase profile"}
        except Exception as err:
            record["profile"] = {"skipped": f"the profile failed: {type(err).__name__}: {err}"}
