"""Measuring one configuration: the matmul floor, the step check, timed epochs, the loss check.

Part of `python -m benchmarks`. For one network and batch size every backend starts from the
same scratch parameters (scratch.toolbox.model.init_params, copied into torch by parity.convert), and:

1. correctness first: a few training steps on the same batches, compared with NumPy's;
   a backend that disagrees is not timed, nor one whose run diverged (a loss that is not
   finite, in those steps or in the warm-up epoch: reported as diverged, with the step);
2. one untimed warm-up epoch, then `runs` timed epochs (device synchronised before each clock
   read, the loss summed on the device and read after the clock stops);
3. after the timed epochs, its mean training loss over the last epoch beside NumPy's;
4. a per-phase profile of its step on a fraction of the epoch (benchmarks/phases.py).

Epochs shorter than MNIST's 60,000 images (--limit, --quick) are scaled to 60,000 images and
the record says so (`scaled_from`).
"""

import math
import statistics
import time

import numpy as np
import torch

from benchmarks import phases
from benchmarks.backends import NumpyBackend, TorchLoaderBackend, TorchResidentBackend
from benchmarks.references import NumpyMinimalBackend, NumpyToolboxBackend
from benchmarks.cudagraph import TorchGraphBackend
from benchmarks.compiled import TorchCompiledBackend
from benchmarks.peers import SklearnBackend
from common.cli import N_CLASSES, N_FEATURES
from scratch.toolbox.model import init_params

FULL_EPOCH = 60_000  # MNIST's training images: every time is reported per epoch of this many
WARMUP_EPOCHS = 1

# name -> (class, device). CUDA rows exist only where torch.cuda.is_available().
BACKENDS = {
    "numpy": (NumpyBackend, "cpu"),
    "numpy-minimal": (NumpyMinimalBackend, "cpu"),
    "numpy-toolbox": (NumpyToolboxBackend, "cpu"),
    "torch-cpu": (TorchLoaderBackend, "cpu"),
    "torch-cpu-resident": (TorchResidentBackend, "cpu"),
    "torch-cpu-compiled": (TorchCompiledBackend, "cpu"),  # benchmarks/compiled.py
    "sklearn": (SklearnBackend, "cpu"),  # benchmarks/peers.py
    "torch-cuda": (TorchLoaderBackend, "cuda"),
    "torch-cuda-resident": (TorchResidentBackend, "cuda"),
    "torch-cuda-graph": (TorchGraphBackend, "cuda"),
    "torch-cuda-compiled": (TorchCompiledBackend, "cuda"),
}
CUDA_BACKENDS = [name for name, (_, device) in BACKENDS.items() if device == "cuda"]

# The step check: STEP_CHECK_STEPS training steps on the same batches from the same weights,
# each loss and then every weight tensor compared with NumPy's. Measured in float32 against
# NumPy (widths 128-64 to 4096-4096, batches 64 and 1024): losses within 2e-7; weights within
# 3e-7, except the hidden biases at batch 1024, within 7e-4 (their gradient is a sum of 1024
# terms that nearly cancel, and both float32 sides stand as far from a float64 run). A learning
# rate off by 10% moves the losses by 8e-4 or more and the weights by 2e-2 or more.
STEP_CHECK_STEPS = 3
STEP_LOSS_RTOL = 1e-5
STEP_PARAM_RTOL = 5e-3

# The loss check after the timed epochs: each backend's mean training loss over its last epoch
# within a factor LOSS_FACTOR of NumPy's. The backends shuffle with different generators
# (NumPy's, the DataLoader's, torch.randperm on the CPU and on the GPU), so from the same weights
# they train on different batch orders, and at lr 0.5 the order moves that loss far more than
# float32 rounding does. Measured with NumPy over 4 to 8 shuffle seeds, largest over smallest:
# 1.07 on full MNIST (4 epochs), 1.14 on --quick's 4096 images (2 epochs), 1.47 on 2000 images
# (4 epochs); 1.17 for 4096-4096 on 4096 images at batch 1024 (torch). The step check above is the
# tight test of each step; this one catches a timed loop that does not train, diverges, trains
# on one batch over and over, or sums its loss wrongly (each off by a factor of 2 or more).
LOSS_FACTOR = 1.5

# ----------------------------------------------------------------------------- the floor


def floor_products(layer_sizes):
    """The matrix products of one training step, by name: per layer x @ W.T (forward) and
    dz.T @ x (dW), and dz @ W (dx) for every layer but the first, whose dx would be the images'
    gradient, which training never uses (scratch's backward skips it, and torch's autograd does
    not compute it: the data does not require grad). 784-128-64-10: 3 + 3 + 2 = 8 products."""
    n = len(layer_sizes) - 1
    return ([f"h{i - 1} @ W{i}.T" for i in range(1, n + 1)] + [f"dz{i}.T @ h{i - 1}" for i in range(n, 0, -1)]
            + [f"dz{i} @ W{i}" for i in range(n, 1, -1)])


def matmul_floor(layer_sizes, batch_size, n_images, runs):
    """Seconds for one epoch's worth of the training step's matrix products alone (one per run).

    The products of floor_products, at the step's shapes, into preallocated outputs; no bias,
    ReLU, softmax or SGD update.
    """
    rng = np.random.default_rng(0)
    layers = list(zip(layer_sizes[:-1], layer_sizes[1:]))  # (fan_in, fan_out)
    weights = [rng.standard_normal((fan_out, fan_in), dtype=np.float32) for fan_in, fan_out in layers]
    full, rest = divmod(n_images, batch_size)
    batches = [batch_size] * full + ([rest] if rest else [])
    buffers = {}
    for b in set(batches):
        buffers[b] = [(rng.standard_normal((b, fan_in), dtype=np.float32),  # x: B, D
                       np.empty((b, fan_out), np.float32),  # h and dout: B, H
                       np.empty((b, fan_in), np.float32) if i > 0 else None,  # dx: B, D (none for the images)
                       np.empty((fan_out, fan_in), np.float32))  # dW: H, D
                      for i, (fan_in, fan_out) in enumerate(layers)]

    def epoch():
        for b in batches:
            for i, (W, (x, h, dx, dW)) in enumerate(zip(weights, buffers[b])):
                np.matmul(x, W.T, out=h)
                np.matmul(h.T, x, out=dW)
                if i > 0:  # no input gradient for the first layer
                    np.matmul(h, W, out=dx)

    epoch()  # warm-up
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        epoch()
        seconds.append(time.perf_counter() - start)
    return seconds


# ----------------------------------------------------------------------------- correctness


def check_batches(n_images, batch_size):
    """The index arrays of the step check: consecutive full-size batches (wrapping around)."""
    size = min(batch_size, n_images)
    return [(np.arange(size) + k * size) % n_images for k in range(STEP_CHECK_STEPS)]


def normwise_error(a, b):
    """max |a - b| / max |b| (DESIGN.md section 4): stable where entries of b are near zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else float(np.max(np.abs(a - b)))


class Diverged(RuntimeError):
    """A training run whose loss stopped being finite: reported as diverged and never timed."""


def run_steps(backend, batches):
    """Train on the given batches; return (losses, params afterwards)."""
    with np.errstate(all="ignore"):  # overflow in a diverging run: reported by check_finite
        losses = [float(backend.step(idx)) for idx in batches]
    return losses, backend.get_params()


def check_finite(name, losses, lr):
    """Raise Diverged naming the backend and the first step whose loss is not finite."""
    for step, loss in enumerate(losses, 1):
        if not math.isfinite(loss):
            raise Diverged(f"the run diverged: {name}'s loss is {loss} at step {step} of the step check "
                           f"(lr {lr:g}); a diverged configuration is not timed: lower --lr")


def step_check(backend, batches, reference, name="this backend", lr=math.nan):
    """Compare a backend's steps with NumPy's (`reference` = run_steps of a NumpyBackend); raise
    Diverged, rather than compare, where this backend's losses stop being finite."""
    losses, params = run_steps(backend, batches)
    check_finite(name, losses, lr)
    ref_losses, ref_params = reference
    loss_err = max(normwise_error(a, b) for a, b in zip(losses, ref_losses))
    param_errs = {k: normwise_error(params[k], ref_params[k]) for k in ref_params}
    worst = max(param_errs, key=lambda k: math.inf if math.isnan(param_errs[k]) else param_errs[k])
    ok = bool(loss_err <= STEP_LOSS_RTOL and param_errs[worst] <= STEP_PARAM_RTOL)  # NaN fails
    return {"steps": len(batches), "loss_rel_err": loss_err, "param_rel_err": param_errs[worst],
            "worst_param": worst, "loss_rtol": STEP_LOSS_RTOL, "param_rtol": STEP_PARAM_RTOL, "ok": ok}


def describe_check_failure(check):
    return (f"step check failed: after {check['steps']} steps the losses differ from NumPy's by "
            f"{check['loss_rel_err']:.1e} (tolerance {check['loss_rtol']:g}) and {check['worst_param']} "
            f"by {check['param_rel_err']:.1e} (tolerance {check['param_rtol']:g}); not timed")


# ----------------------------------------------------------------------------- timing


def time_epochs(backend, runs, name="this backend"):
    """Seconds of `runs` training epochs after WARMUP_EPOCHS untimed ones; Diverged where the
    warm-up's loss is not finite (the timed epochs would time a run that no longer trains)."""
    for _ in range(WARMUP_EPOCHS):
        with np.errstate(all="ignore"):
            backend.epoch()
        backend.sync()
    if not math.isfinite(backend.epoch_loss()):
        raise Diverged(f"the run diverged: {name}'s mean loss over its warm-up epoch is "
                       f"{backend.epoch_loss()}; a diverged configuration is not timed: lower --lr")
    seconds = []
    for _ in range(runs):
        backend.sync()
        start = time.perf_counter()
        backend.epoch()
        backend.sync()  # the GPU has finished every step before the clock is read
        seconds.append(time.perf_counter() - start)
    return seconds


def summary(seconds, scale):
    return {"median_s": statistics.median(seconds) * scale,
            "min_s": min(seconds) * scale, "max_s": max(seconds) * scale}


# ----------------------------------------------------------------------------- one configuration


def run_config(X, y, hidden, batch_size, backends, runs, lr=0.5, seed=0, log=print):
    """Measure `backends` (names of BACKENDS) on (X, y) for one network; return the records."""
    sizes = [N_FEATURES, *hidden, N_CLASSES]
    params = init_params(sizes, np.random.default_rng(seed), np.float32)
    n = len(X)
    scale = FULL_EPOCH / n
    base = {"batch_size": batch_size, "hidden": list(hidden), "images": n,
            "steps": math.ceil(n / batch_size)}
    if n != FULL_EPOCH:
        base["scaled_from"] = n
    batches = check_batches(n, batch_size)
    reference = run_steps(NumpyBackend(X, y, params, batch_size, lr, seed), batches)
    profiler = phases.Profiler(X, y, params, batch_size, lr, seed, FULL_EPOCH)
    records = []
    for name in backends:
        cls, device = BACKENDS[name]
        record = {"backend": name, "device": device, **base, "runs": runs}
        try:
            check_finite("numpy", reference[0], lr)  # NumPy's steps are every backend's reference
            backend = cls(X, y, params, batch_size, lr, seed, device)
            record.update(getattr(backend, "record_fields", {}))  # e.g. the SGD variant, the compile time
            record["step_check"] = step_check(backend, batches, reference, name, lr)
            if not record["step_check"]["ok"]:
                raise RuntimeError(describe_check_failure(record["step_check"]))
            backend.set_params(params)  # the timed training starts from the shared weights
            seconds = time_epochs(backend, runs, name)
            record.update(summary(seconds, scale), final_loss=backend.epoch_loss())
            if n != FULL_EPOCH:
                record["raw_median_s"] = statistics.median(seconds)
            if isinstance(backend, TorchLoaderBackend):
                start = time.perf_counter()
                backend.loader_pass()
                record["loader_s"] = (time.perf_counter() - start) * scale
            if name == "numpy":
                floor = matmul_floor(sizes, batch_size, n, runs)
                record["floor_s"] = statistics.median(floor) * scale
                record["floor_products"] = floor_products(sizes)
            backend = None
            profiler.profile(record, cls, device)
        except Exception as err:  # recorded and reported; the other backends still run
            record["error"] = str(err) if isinstance(err, Diverged) else f"{type(err).__name__}: {err}"
        finally:
            backend = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        log(describe_record(record))
        records.append(record)
    check_losses(records)
    return records


def check_losses(records):
    """Add loss_rel_diff / loss_ok: each final loss against NumPy's, within a factor LOSS_FACTOR."""
    ref = next((r.get("final_loss") for r in records if r["backend"] == "numpy"), None)
    for record in records:
        loss = record.get("final_loss")
        if ref is None or loss is None:
            continue
        diff = (loss - ref) / ref if ref > 0 else math.nan
        record["loss_rel_diff"] = diff if math.isfinite(diff) else None
        record["loss_ok"] = bool(ref > 0 and 1 / LOSS_FACTOR <= loss / ref <= LOSS_FACTOR)  # NaN fails


def width_label(hidden):
    return "-".join(map(str, hidden))


def describe_record(record):
    """One line for the log: backend, configuration, median time, loss."""
    head = (f"{record['backend']:<20} batch {record['batch_size']:<5} {width_label(record['hidden']):<10} "
            f"{record['images']} images")
    if "error" in record:
        return f"{head}: FAILED {record['error']}"
    scaled = ", scaled to 60000 images" if "scaled_from" in record else ""
    line = (f"{head}: median {record['median_s']:.4g} s/epoch ({record['min_s']:.4g}-{record['max_s']:.4g}"
            f"{scaled}), loss {record['final_loss']:.4f}")
    if "floor_s" in record:
        line += f", matmul floor {record['floor_s']:.4g} s"
    return line
