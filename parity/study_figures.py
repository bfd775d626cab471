"""The figures of the study page (python -m parity --html), every one measured in the run that builds it.

measure_core: for each function of the core pair (scratch/mlp.py beside torchimpl/mlp.py) the
comparison that proves that very function, as parity.compare.Records wrapped in Figures whose
`what` says exactly what was compared; plus central finite differences, which trust no torch.
parity/study_toolbox.py adds each toolbox piece with its own short float64 parity run, and
parity/study.py renders both with parity/study_page.py. Try it:
    python -c "from parity.core import mnist_batch; from parity.study_figures import measure_core;
               X, y = mnist_batch(640); print(measure_core(X, y, X[:100], y[:100], steps=5)[0]['forward'])"
The scratch side is looked up through its module at call time (ours.relu_backward, ...), so a
test can swap in a wrong formula and see exactly the rows it breaks fail.
Notation: N batch, D in, H hidden, C classes, K steps.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import scratch.mlp as ours  # looked up at call time: a test can swap in a wrong formula
import torchimpl.mlp as theirs
from common.cli import EVAL_BATCH
from common.errors import InputError
from parity.compare import Record, compare, errors
from parity.core import by_scratch_name, check_core, copy_weights
from parity.run import batch_sequence, full_precision_one_thread
from parity.tolerances import ONE_BATCH, PREDICTIONS_DIFFERING, TEST_ACCURACY, TRAINING

# A draw's statistics, n entries of U(-a, a): the mean has standard error a / sqrt(3n); the mean
# square (about the known mean 0) has mean a^2/3 and variance (a^4/5 - a^4/9) / n = 4a^4 / (45n),
# so the root mean square has relative standard error sqrt(4/45 * 9/4 / n) = sqrt(0.2 / n). Each
# is held to DRAW_Z standard errors: a correct draw lands outside with probability 6e-7 (normal
# tail; the uniform is light-tailed, and the smallest tensor here, b3, has 10 entries). A bound
# twice too large doubles the RMS (relative error 1, against 0.71 for 10 entries, 0.007 for W1).
DRAW_Z = 5.0

# Central differences, as tests/test_oracles.py reasons: truncation ~ h^2 |L'''| / 6 (about
# 1e-10 at h = 1e-5) plus roundoff ~ eps |L| / h (2.3 * 1.1e-16 / 1e-5 = 2.5e-11), against a
# tensor's largest gradient of 1e-4..1e-1; measured there at most 1.4e-8 (3.4e-8 for dX). A
# smaller h lets roundoff win, a larger one steps across ReLU kinks; a wrong formula is off by
# 1e-2 and more.
FD_STEP, FD_TOL, FD_ENTRIES = 1e-5, 1e-7, 5  # random entries per tensor, plus the largest-gradient one
FD_SIZES, FD_BATCH = (20, 16, 12, 5), 8


@dataclass
class Figure:
    record: Record  # parity.compare.Record: name, max_abs_err, max_rel_err, tolerance, checked, ok, ...
    what: str  # one line for a tooltip: exactly what was compared
    run_ok: bool | None = None  # a toolbox figure: the verdict of the whole run it summarises


def _exact(record):
    """The same comparison held to exactly 0 on the max abs error (no rounding can occur)."""
    return dataclasses.replace(record, tolerance=0.0, checked="max_abs_err")


def _count(check, name, count, n, tolerance, dtype, note=""):
    """A Record for a count that must stay at most `tolerance` (checked on max_abs_err)."""
    return Record(check, name, dtype, (n,), count, count / max(n, 1), tolerance, checked="max_abs_err", note=note)


def _raised(key, dtype, err):
    return [Figure(Record(key, "raised", dtype, (), math.inf, math.inf, 0.0,
                          note=f"raised {type(err).__name__}: {err}"), f"{key}: the code raised instead of returning")]


def _array(t):
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- init_model


def _draw_records(side, draws, layer_sizes, dtype):
    """Range, mean and RMS of one side's own draw of every W_i, b_i against U(-1/sqrt(fan_in), ...):
    each the tensor worst against its own tolerance, over all tensors."""
    rows = {"range": [], "mean": [], "rms": []}
    for i, fan_in in enumerate(layer_sizes[:-1], start=1):
        bound = float(np.dtype(dtype).type(1 / math.sqrt(fan_in)))  # the bound as the dtype rounds it
        for name in (f"W{i}", f"b{i}"):
            a = np.asarray(draws[name], dtype=np.float64)
            top = float(np.abs(a).max())
            excess = max(0.0, top - bound)
            rows["range"].append((top / bound, excess, excess / bound, 0.0, name))
            mean_se, rms_se = 1 / math.sqrt(3 * a.size), math.sqrt(0.2 / a.size)  # relative to bound, bound/sqrt(3)
            mean = abs(float(a.mean()))
            rows["mean"].append((mean / bound / mean_se, mean, mean / bound, DRAW_Z * mean_se, name))
            target = bound / math.sqrt(3)
            rms = float(np.sqrt((a * a).mean()))
            dev = abs(rms - target)
            rows["rms"].append((dev / target / rms_se, dev, dev / target, DRAW_Z * rms_se, name))
    n = len(rows["range"])
    labels = {"range": ("entries inside +-1/sqrt(fan_in)", "max(0, max|w| - bound)", "max_abs_err"),
              "mean": ("mean", "|mean| / bound", "max_rel_err"),
              "rms": ("root mean square", "|rms / (bound/sqrt(3)) - 1|", "max_rel_err")}
    figures = []
    for kind, found in rows.items():
        _, abs_err, rel_err, tol, name = max(found)
        title, measure, checked = labels[kind]
        record = Record("init_model", f"{side} draw: {title} ({name} worst)", dtype, draws[name].shape, abs_err,
                        rel_err, tol, checked=checked)
        tol_text = "0" if kind == "range" else (f"{DRAW_Z:g} standard errors for its {draws[name].size} entries "
                                                f"(mean: 1/sqrt(3n) of the bound; rms: sqrt(0.2/n))")
        how = "a fresh default_rng(seed)" if side == "scratch" else "after torch.manual_seed(seed)"
        figures.append(Figure(record, f"{side}'s own init_model draw ({how}), {dtype}: {measure} for each of "
                                      f"the {n} tensors against U(-1/sqrt(fan_in), "
                                      f"1/sqrt(fan_in)), tolerance {tol_text}; the tensor worst against its own "
                                      f"tolerance shown ({name})"))
    return figures


def _init_model(layer_sizes, seed, dtype):
    model = _weights(layer_sizes, seed, dtype)
    held = {name: _array(p) for name, p in by_scratch_name(
        copy_weights(model, theirs.init_model(layer_sizes, getattr(torch, dtype)))).items()}
    copied = _exact(compare("init_model", "weights held by torch after the copy",
                            np.concatenate([np.ravel(model.get(k, np.nan)) for k in held]),
                            np.concatenate([np.ravel(v) for v in held.values()]), 0.0, dtype))
    figures = [Figure(copied, f"the scratch core's init_model draw (default_rng(seed), {dtype}) copied into "
                              f"theirs.init_model's nn.Linear layers: all {len(held)} tensors bit for bit "
                              f"(max abs err 0, tolerance 0)")]
    figures += _draw_records("scratch", model, layer_sizes, dtype)
    torch.manual_seed(seed)  # measure_core runs inside fork_rng: the caller's generator is untouched
    net = theirs.init_model(layer_sizes, getattr(torch, dtype))
    return figures + _draw_records("torch", {k: _array(p) for k, p in by_scratch_name(net).items()},
                                   layer_sizes, dtype)


# ----------------------------------------------------------------------------- one layer, one batch


def _weights(layer_sizes, seed, dtype):
    return ours.init_model(layer_sizes, np.random.default_rng(seed), np.dtype(dtype))


def _layers(layer_sizes, xb, seed, dtype):
    """The first layer's linear and ReLU, each scratch function against F.linear / F.relu and
    autograd driven by a random upstream gradient (never ones)."""
    tol, rng, model = ONE_BATCH[dtype], np.random.default_rng((seed, 1)), _weights(layer_sizes, seed, dtype)
    W, b = model["W1"], model["b1"]
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (xb, W, b))
    out_t = F.linear(xt, Wt, bt)  # N, H
    dout = rng.standard_normal(tuple(out_t.shape)).astype(dtype)  # N, H   in the dtype of the run
    (out_t * torch.from_numpy(dout)).sum().backward()
    out, cache = ours.linear_forward(xb, W, b)
    dx, dW, db = ours.linear_backward(dout, cache)
    shape = f"x {xb.shape}, W1 {W.shape}, b1 {b.shape}, {dtype}"
    rows = {"linear_forward": [Figure(compare("linear_forward", "out", out, out_t, tol, dtype),
                                      f"linear_forward(x, W1, b1) against F.linear, {shape}")]}
    rows["linear_backward"] = [Figure(compare("linear_backward", name, ours_g, t.grad, tol, dtype),
                                      f"linear_backward's {name} against autograd of F.linear, a random "
                                      f"N(0, 1) upstream gradient {dout.shape}, {shape}")
                               for name, ours_g, t in (("dx", dx, xt), ("dW", dW, Wt), ("db", db, bt))]

    pre = _array(out_t).copy()  # N, H   the first layer's pre-activations
    pre.ravel()[::7] = 0.0  # at exactly 0 torch passes no gradient, and neither must scratch
    pre_t = torch.tensor(pre, requires_grad=True)
    relu_t = F.relu(pre_t)
    dout = rng.standard_normal(pre.shape).astype(dtype)  # N, H
    (relu_t * torch.from_numpy(dout)).sum().backward()
    relu, cache = ours.relu_forward(pre)
    where = f"the first layer's pre-activations {pre.shape} of the batch, every 7th entry set to exactly 0, {dtype}"
    rows["relu_forward"] = [Figure(_exact(compare("relu_forward", "out", relu, relu_t, 0.0, dtype)),
                                   f"relu_forward against F.relu on {where}: exact on both sides, tolerance 0")]
    rows["relu_backward"] = [Figure(_exact(compare("relu_backward", "dx", ours.relu_backward(dout, cache),
                                                   pre_t.grad, 0.0, dtype)),
                                    f"relu_backward against autograd of F.relu, a random N(0, 1) upstream "
                                    f"gradient, on {where}: a masked copy, exact, tolerance 0")]
    return rows


def _softmax_cross_entropy(xb, yb, layer_sizes, seed, dtype):
    """The loss and dL/dlogits on torch's logits of the batch, against F.cross_entropy and autograd
    with a random upstream gradient g for the scalar loss."""
    net = copy_weights(_weights(layer_sizes, seed, dtype), theirs.init_model(layer_sizes, getattr(torch, dtype)))
    with torch.no_grad():
        logits = _array(net(torch.from_numpy(xb)))  # N, C
    g = float(np.random.default_rng((seed, 2)).uniform(0.5, 2.0))
    zt = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(zt, torch.from_numpy(yb))
    (loss_t * g).backward()
    loss, dlogits = ours.softmax_cross_entropy(logits, yb)
    where = f"the network's logits {logits.shape} for the batch (the same array on both sides), {dtype}"
    return [Figure(compare("softmax_cross_entropy", "loss", loss, loss_t, ONE_BATCH[dtype], dtype),
                   f"softmax_cross_entropy's loss against F.cross_entropy on {where}"),
            Figure(compare("softmax_cross_entropy", "dlogits", g * dlogits, zt.grad, ONE_BATCH[dtype], dtype),
                   f"softmax_cross_entropy's dL/dlogits against autograd of F.cross_entropy with a random "
                   f"upstream gradient g = {g:.3f} (g * dlogits compared) on {where}")]


def _core(xb, yb, layer_sizes, seed, lr, dtype):
    """forward, backward and SGD from parity.core.check_core: the whole network on one batch."""
    records = check_core(xb, yb, layer_sizes, seed, dtype, lr)
    batch = f"a {xb.shape} batch, weights from default_rng(seed), {dtype}"
    rows = {"forward": [Figure(r, f"forward's logits against the torch core's net(X) (copied weights), {batch}")
                        for r in records if r.name == "logits"],
            "backward": [Figure(r, f"backward's {r.name} (from softmax_cross_entropy's dlogits) against autograd "
                                   f"of F.cross_entropy(net(X), y), {batch}")
                         for r in records if r.check == "one batch" and r.name.startswith("d")],
            "SGD": [Figure(r, f"{r.name} after one SGD(model, lr={lr:g}).step(grads) against "
                              f"torch.optim.SGD(lr={lr:g}).step(), {batch}")
                    for r in records if r.check == "one SGD step"]}
    if not rows["SGD"]:  # check_core stops before the step when a gradient has the wrong shape
        rows["SGD"] = [Figure(Record("one SGD step", "not reached", dtype, (), math.inf, math.inf, 0.0,
                                     note="a gradient had the wrong shape"), "SGD: not run, see backward")]
    return rows


# ----------------------------------------------------------------------------- minibatches, training, evaluation


def _iterate_minibatches(y, batch_size, seed, dtype):
    """Each example's index stands in for its pixels, so every batch says which examples it holds."""
    n, ids = len(y), np.arange(len(y))
    ours_b = list(ours.iterate_minibatches(ids, y, batch_size, np.random.default_rng(seed)))
    loader = DataLoader(TensorDataset(torch.from_numpy(ids), torch.from_numpy(y)), batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    theirs_b = [(_array(a), _array(b)) for a, b in loader]
    sizes = [np.array([len(b) for _, b in side]) for side in (ours_b, theirs_b)]
    sizes_rec = _exact(compare("iterate_minibatches", "batch sizes", *sizes, 0.0, dtype))
    figures = [Figure(sizes_rec, f"the {len(sizes[1])} batch sizes in order, iterate_minibatches(X, y, {batch_size}, "
                                 f"default_rng(seed)) against DataLoader(TensorDataset(X, y), {batch_size}, "
                                 f"shuffle=True) on {n} examples (each one's index as X), the last partial batch "
                                 f"kept; the shuffles differ by design (rng.permutation against torch.randperm)")]
    for side, batches in (("scratch", ours_b), ("torch", theirs_b)):
        seen = np.bincount(np.concatenate([i for i, _ in batches]), minlength=n) if batches else np.zeros(n, int)
        paired = sum(int((y[i] != yb).sum()) for i, yb in batches)  # labels that left their example
        wrong = int((seen != 1).sum()) + paired
        figures.append(Figure(_count("iterate_minibatches", f"{side}: examples not seen exactly once", wrong, n, 0,
                                     dtype, note=f"{paired} labels apart from their example"),
                              f"{side}'s one pass over {n} examples (each example's index in place of its pixels): "
                              f"examples missing or repeated, plus labels not with their example; tolerance 0"))
    return figures


def _train(X, y, layer_sizes, seed, lr, batch_size, steps, dtype):
    """Both cores' train_epoch, one batch per call so that every step's weights can be compared."""
    rng = np.random.default_rng(seed)  # as parity.run: the weights, then the batch sequence
    model = ours.init_model(layer_sizes, rng, np.dtype(dtype))
    net = copy_weights(model, theirs.init_model(layer_sizes, getattr(torch, dtype)))
    batches = batch_sequence(len(X), batch_size, steps, rng)
    optimizer, optimizer_t = ours.SGD(model, lr), torch.optim.SGD(net.parameters(), lr=lr)
    params_t = by_scratch_name(net)
    worst = {name: (0.0, 0.0, None) for name in params_t}  # name -> (rel, abs, step) of its largest error
    losses, losses_t = np.zeros(len(batches)), np.zeros(len(batches))  # K
    for step, idx in enumerate(batches, start=1):
        xb, yb = X[idx], y[idx]  # B, D and B
        losses[step - 1] = ours.train_epoch(model, optimizer, [(xb, yb)])
        losses_t[step - 1] = theirs.train_epoch(net, optimizer_t, [(torch.from_numpy(xb), torch.from_numpy(yb))])
        for name, p in params_t.items():
            abs_err, rel_err = errors(model.get(name, np.nan), _array(p))
            old = worst[name]
            if old[2] is None or rel_err > old[0]:
                old = (rel_err, old[1], step)
            worst[name] = (old[0], max(old[1], abs_err), old[2])
    check, tol = f"{len(batches)} SGD steps", TRAINING[dtype]
    how = (f"both cores' train_epoch from the same weights on the same {len(batches)} batches of {batch_size} "
           f"(parity.run.batch_sequence, default_rng(seed)), SGD lr {lr:g}, {dtype}")
    figures = [Figure(Record(check, name, dtype, tuple(p.shape), a, r, tol, step=s),
                      f"{name}: the worst normwise error after any step, {how}")
               for name, (r, a, s), p in ((n, worst[n], params_t[n]) for n in params_t)]
    loss_rec = compare(check, "loss (every step)", losses, losses_t, tol, dtype)
    loss_rec.step = int(np.abs(losses - losses_t).argmax()) + 1
    figures.append(Figure(loss_rec, f"the {len(batches)} per-step losses as one (K,) tensor, {how}"))
    return figures, {"scratch": losses, "torch": losses_t}, model, net


def _evaluate(model, net, X_test, y_test, dtype):
    with torch.no_grad():
        theirs_pred = _array(net(torch.from_numpy(X_test)).argmax(dim=1))  # N
    ours_pred = np.asarray(ours.forward(model, X_test)[0]).argmax(axis=1)  # N
    acc = ours.evaluate(model, ours.iterate_minibatches(X_test, y_test, EVAL_BATCH))
    acc_t = theirs.evaluate(net, DataLoader(TensorDataset(torch.from_numpy(X_test), torch.from_numpy(y_test)),
                                            EVAL_BATCH))
    n, differing = len(y_test), int((ours_pred != theirs_pred).sum())
    figures = [Figure(_count("test set", "predictions differing", differing, n, PREDICTIONS_DIFFERING[dtype], dtype),
                      f"argmax of forward(model, X_test) against argmax of net(X_test) on {n} test images "
                      f"after the training, {dtype}")]
    for side, found, pred in (("scratch", acc, ours_pred), ("torch", acc_t, theirs_pred)):
        counted = float((pred == y_test).mean())
        figures.append(Figure(Record("test set", f"{side} evaluate()", dtype, (), abs(found - counted),
                                     abs(found - counted) / max(counted, 1e-300), 0.0, checked="max_abs_err"),
                              f"{side}'s own evaluate() gives accuracy {found:.4f} on {n} test images; "
                              f"against its predictions counted here ({counted:.4f}), tolerance 0"))
    gap = abs(acc - acc_t)
    main = Record("test set", "accuracy gap", dtype, (), gap, gap / max(acc_t, 1e-300), TEST_ACCURACY[dtype],
                  checked="max_abs_err", note=f"scratch {acc:.4f}, torch {acc_t:.4f}")
    return figures, [Figure(main, f"test accuracy after the training, scratch {acc:.4f} against torch {acc_t:.4f} "
                                  f"on {n} test images, {dtype}: the gap, tolerance {TEST_ACCURACY[dtype]:g}")]


# ----------------------------------------------------------------------------- finite differences


def _finite_differences(seed):
    """scratch.mlp's backward against central differences of its own loss, float64, no torch."""
    rng = np.random.default_rng((seed, 3))
    model = ours.init_model(FD_SIZES, rng, np.float64)
    X, y = rng.random((FD_BATCH, FD_SIZES[0])), rng.integers(0, FD_SIZES[-1], FD_BATCH)  # N, D and N
    logits, caches = ours.forward(model, X)
    _, dlogits = ours.softmax_cross_entropy(logits, y)
    grads, dX = ours.backward(dlogits, caches, input_grad=True)
    figures = []
    for name, value, grad in [*((f"d{k}", model[k], grads.get(k)) for k in model), ("dX", X, dX)]:
        grad = np.asarray(grad) if grad is not None else np.zeros(0)
        if grad.shape != value.shape:
            record = Record("finite differences", name, "float64", value.shape, math.inf, math.inf, FD_TOL,
                            note=f"shape mismatch: scratch {grad.shape}")
        else:
            probes = [np.unravel_index(np.abs(grad).argmax(), grad.shape)]
            probes += [tuple(int(rng.integers(0, s)) for s in value.shape) for _ in range(FD_ENTRIES)]
            worst = 0.0
            for i in probes:
                saved, moved = value[i], []
                for entry in (saved + FD_STEP, saved - FD_STEP):
                    value[i] = entry
                    moved.append(ours.softmax_cross_entropy(ours.forward(model, X)[0], y)[0])
                value[i] = saved
                worst = max(worst, abs((moved[0] - moved[1]) / (2 * FD_STEP) - grad[i]))
            scale = float(np.abs(grad).max())
            record = Record("finite differences", name, "float64", value.shape, worst,
                            worst / scale if scale else (0.0 if worst == 0 else math.inf), FD_TOL, scale=scale)
        figures.append(Figure(record, f"{name} of scratch.mlp.backward against (L(p + h) - L(p - h)) / 2h, "
                                      f"h = {FD_STEP:g}, at {FD_ENTRIES + 1} entries (the largest gradient and "
                                      f"{FD_ENTRIES} random), divided by max |{name}|; "
                                      f"{'-'.join(map(str, FD_SIZES))}, a batch of {FD_BATCH}, float64, no torch"))
    return figures


# ----------------------------------------------------------------------------- the core pair


def measure_core(X, y, X_test, y_test, layer_sizes=(784, 128, 64, 10), seed=0, lr=0.5, batch_size=64, steps=100,
                 dtype="float64"):
    """(figures {row key: [Figure]}, losses {"scratch": (K,), "torch": (K,)}): one key per function
    of the core pair and "finite differences", all measured here. Deterministic given seed; torch's
    global generator is left as it was."""
    dtype = np.dtype(dtype).name
    X, X_test = np.asarray(X, dtype=dtype), np.asarray(X_test, dtype=dtype)
    y, y_test = np.asarray(y, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    layer_sizes = tuple(int(s) for s in layer_sizes)
    xb, yb = X[:batch_size], y[:batch_size]  # the one batch: the first batch_size training images
    figures, losses = {}, {"scratch": np.zeros(0), "torch": np.zeros(0)}

    def row(keys, build):
        try:
            found = build()
        except InputError:  # bad data or arguments are the caller's to fix
            raise
        except (ValueError, RuntimeError, IndexError, KeyError) as err:  # a broken twin may not even run
            found = {key: _raised(key, dtype, err) for key in keys}
        figures.update(found)
        return found

    with torch.random.fork_rng(devices=[]), full_precision_one_thread():
        row(["init_model"], lambda: {"init_model": _init_model(layer_sizes, seed, dtype)})
        row(["linear_forward", "linear_backward", "relu_forward", "relu_backward"],
            lambda: _layers(layer_sizes, xb, seed, dtype))
        row(["forward", "backward", "SGD"], lambda: _core(xb, yb, layer_sizes, seed, lr, dtype))
        row(["softmax_cross_entropy"],
            lambda: {"softmax_cross_entropy": _softmax_cross_entropy(xb, yb, layer_sizes, seed, dtype)})
        row(["iterate_minibatches"], lambda: {"iterate_minibatches": _iterate_minibatches(y, batch_size, seed, dtype)})
        trained = []

        def train():
            found, curves, *models = _train(X, y, layer_sizes, seed, lr, batch_size, steps, dtype)
            losses.update(curves)
            trained.extend(models)
            return {"train_epoch": found}
        row(["train_epoch"], train)
        if trained:
            row(["evaluate", "main"], lambda: dict(zip(("evaluate", "main"),
                                                       _evaluate(*trained, X_test, y_test, dtype))))
        else:  # nothing trained to evaluate
            not_run = RuntimeError("train_epoch did not run")
            figures.update({key: _raised(key, dtype, not_run) for key in ("evaluate", "main")})
        row(["finite differences"], lambda: {"finite differences": _finite_differences(seed)})
    return figures, losses
