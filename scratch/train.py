"""Train the NumPy twin: python -m scratch.train [--preset NAME] [--epochs 20 --hidden 128 64 ...]

Twin: torchimpl/train.py takes the same flags and prints the same lines. The step is the core's
(scratch/mlp.py: forward, loss, backward, optimizer step) with the toolbox's options; with every
option at its default this program trains exactly what python -m scratch.mlp trains. MNIST by
default; --preset runs one of the chapters' examples (common/presets.py); --save, --load, --plot
and --summary handle the model's files.
"""

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from common import cli, memory, outputs, plot, summary
from common.layout import ACTIVATION_MODULES
from common.errors import InputError, run_cli
from common.presets import DATASETS, PRESETS
from scratch.extras import checkpoint, datasets
from scratch.data import check_dataset
from scratch.mlp import iterate_minibatches
from scratch.toolbox.losses import binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy, mse
from scratch.toolbox.model import Arch, Network, backward, forward, init_buffers, init_params, layer_sizes_of
from scratch.toolbox.optim import SGD, Adam, AdamW
from scratch.toolbox.schedules import CosineAnnealingLR

LOSSES = {"ce": cross_entropy, "bce": binary_cross_entropy,
          "bce-logits": binary_cross_entropy_with_logits, "mse": mse}

# ----------------------------------------------------------------------------- pieces of a run


def make_optimizer(name, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    return {"adam": Adam, "adamw": AdamW}[name](params, lr=lr, weight_decay=weight_decay)


def loss_targets(loss, y, out):
    """Class labels for cross-entropy; for the other losses, one-hot rows shaped like the output
    (float targets, as the student and sum data have, pass through: the loss checks shapes)."""
    if loss == "ce" or not np.issubdtype(y.dtype, np.integer):
        return y
    return np.eye(out.shape[1], dtype=out.dtype)[y]  # N, C


def check_targets(X, y, n_features, n_outputs):
    """Raise InputError unless X is (N, n_features) finite floats and y (N, n_outputs) floats."""
    if X.ndim != 2 or X.shape[1] != n_features or len(X) == 0:
        raise InputError(f"inputs must have shape (N, {n_features}) with N > 0, got {X.shape}")
    if not np.issubdtype(X.dtype, np.floating) or not np.isfinite(X).all():
        raise InputError("inputs must be finite floating-point numbers")
    if y.shape != (len(X), n_outputs) or not np.issubdtype(y.dtype, np.floating):
        raise InputError(f"targets must be floats shaped ({len(X)}, {n_outputs}) like the outputs, "
                         f"got {y.dtype} {y.shape}")


# ----------------------------------------------------------------------------- one epoch


def train_epoch(model, optimizer, batches, loss="ce", epoch=1):
    """One pass over the batches (a Network in training mode); the mean training loss per example.

    Stops with cli.diverged's message at the first non-finite loss, or at the step whose update
    left a weight inf or nan: the run has diverged, training on is waste.
    """
    cli.check_step_sizes(optimizer.lr, getattr(optimizer, "betas", None), getattr(optimizer, "weight_decay", 0.0),
                      getattr(optimizer, "decoupled_weight_decay", False), next(iter(model.params.values())).dtype.name)
    total, n, step = 0.0, 0, 0
    for step, (xb, yb) in enumerate(batches, 1):
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported just below
            out, caches = forward(model.params, xb, model.arch, model.buffers, train=True, rng=model.rng)  # B, C
            try:
                value, dout = LOSSES[loss](out, loss_targets(loss, yb, out))
            except InputError:  # bce refuses a nan output as no probability: the weights overflowed
                if np.isfinite(out).all():
                    raise
                value = float("nan")
        if not np.isfinite(value):
            # A weight the last update made inf or nan shows here, in this step's loss (inf * 0
            # is nan): the weights are scanned only then, not after every step.
            if step > 1 and not _finite_weights(model.params):
                raise InputError(cli.diverged(epoch, step - 1, cli.WEIGHTS_OVERFLOWED))
            raise InputError(cli.diverged(epoch, step, value))
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing update is caught as above
            grads, _ = backward(dout, caches)
            optimizer.step(grads)
        total, n = total + float(value) * len(yb), n + len(yb)
    # The last update has no next loss, and a unit saturated by an inf weight (tanh, a ReLU held
    # at 0 by a -inf bias) hides it from every loss: one scan per epoch catches both.
    if not _finite_weights(model.params):
        raise InputError(cli.diverged(epoch, step, cli.WEIGHTS_OVERFLOWED))
    return total / n


def _finite_weights(params):
    return all(np.isfinite(p).all() for p in params.values())


def evaluate(model, batches, task="classes", loss="ce"):
    """In evaluation mode: the accuracy (classes: the largest output; binary: the output above
    0.5, or above 0 for bce-logits' logits), or for regression the mean squared error."""
    total, n, threshold = 0.0, 0, 0.0 if loss == "bce-logits" else 0.5
    for xb, yb in batches:
        with np.errstate(over="ignore", invalid="ignore"):  # huge weights score as they are; training reports them
            out, _ = forward(model.params, xb, model.arch, model.buffers, train=False)  # B, C
        if task == "classes":
            total, n = total + int((out.argmax(axis=1) == yb).sum()), n + len(yb)
        else:
            hits = ((out > threshold) == (yb > 0.5)).sum() if task == "binary" else ((out - yb) ** 2).sum()
            total, n = total + float(hits), n + yb.size
    return total / n


def mean_loss(model, batches, loss="ce"):
    """The loss over the batches in evaluation mode, per example: what --epochs 0 reports."""
    total, n = 0.0, 0
    for xb, yb in batches:
        out, _ = forward(model.params, xb, model.arch, model.buffers, train=False)
        total, n = total + float(LOSSES[loss](out, loss_targets(loss, yb, out))[0]) * len(yb), n + len(yb)
    return total / n


# ----------------------------------------------------------------------------- the run


def epoch_figures(model, train, test, task="classes", loss="ce"):
    """(train accuracy, test accuracy, test MSE) on the (X, y) pairs, each None where the task
    has none (or there is no test set)."""
    def score(pair):
        return evaluate(model, iterate_minibatches(*pair, cli.EVAL_BATCH), task, loss)

    if task == "regression":
        return None, None, score(test)
    return score(train), None if test is None else score(test), None


def fit(model, optimizer, train, test, epochs, batch_size, rng, on_epoch=None, loss="ce", schedule=None,
        task="classes", fresh=None):
    """Train for `epochs`, evaluating after each; return the list of per-epoch records.

    rng shuffles the batches; fresh(epoch), where given, supplies each epoch's own training rows
    (train may then be None).
    """
    if batch_size <= 0:
        raise InputError(f"batch size must be positive, got {batch_size}")
    sizes = layer_sizes_of(model.params)
    check = check_dataset if task == "classes" else check_targets
    for pair in (train, test, fresh(1) if fresh else None):
        if pair is not None:
            check(*pair, sizes[0], sizes[-1])
    history = []
    for epoch in range(1, epochs + 1):
        X, y = fresh(epoch) if fresh else train
        batches = cli.progress(iterate_minibatches(X, y, batch_size, rng), math.ceil(len(X) / batch_size), "train")
        start = time.perf_counter()
        train_loss = train_epoch(model, optimizer, batches, loss, epoch)
        seconds = time.perf_counter() - start
        if schedule is not None:
            schedule.step()  # once per epoch, after the optimizer's steps
        train_acc, test_acc, test_mse = epoch_figures(model, (X, y), test, task, loss)
        record = cli.epoch_record(epoch, train_loss, train_acc, test_acc, seconds, test_mse)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


def summarize(model):
    """The --summary table: torch's modules of the same network, counted from scratch's arrays."""
    params, arch = model.params, model.arch
    rows, index, n = [], 0, sum(name.startswith("W") for name in params)
    for i in range(1, n + 1):
        width = params[f"W{i}"].shape[0]
        rows.append((f"net.{index}", "Linear", width, params[f"W{i}"].size + params[f"b{i}"].size))
        index += 1
        if i < n:
            if f"gamma{i}" in params:
                count = params[f"gamma{i}"].size + params[f"beta{i}"].size
                rows.append((f"net.{index}", "BatchNorm1d", width, count))
                index += 1
            rows.append((f"net.{index}", ACTIVATION_MODULES[arch.activation], width, 0))
            index += 1
            if arch.dropout > 0:
                rows.append((f"net.{index}", "Dropout", width, 0))
                index += 1
    if arch.sigmoid_output:
        rows.append((f"net.{index}", "Sigmoid", params[f"W{n}"].shape[0], 0))
    return summary.format_summary(rows, sum(np.size(v) for v in model.buffers.values()))


def run_probe(args, model):
    """The preset's closing question: reload the model where the chapter does, then print the
    outputs for the probe's inputs."""
    probe, dtype = PRESETS[args.preset].probe, model.params["W1"].dtype
    if probe.reload:
        with tempfile.TemporaryDirectory() as folder:
            path = args.save or str(Path(folder) / "model.npz")
            if not args.save:
                checkpoint.save(path, model)
            params = init_params(layer_sizes_of(model.params), np.random.default_rng(0), dtype,
                                 batchnorm=model.arch.batchnorm)
            model = Network(params, model.arch, init_buffers(params))
            checkpoint.load(path, model)
    out, _ = forward(model.params, datasets.probe_inputs(args.preset, dtype), model.arch, model.buffers, train=False)
    if args.loss == "bce-logits":  # the model gives logits: the probability is their sigmoid
        out = 1 / (1 + np.exp(-out))
    for value in out[:, 0]:
        print(json.dumps({"probe": probe.text, "reloaded": probe.reload, "output": float(value)}) if args.json
              else f"{'reloaded model: ' if probe.reload else ''}{probe.text}: {float(value):.4f}", flush=True)


def main(argv=None):
    args = cli.parse_args(cli.build_parser("python -m scratch.train", __doc__.splitlines()[0]), argv)
    outputs.check_outputs({"--save": args.save, "--plot": args.plot}, cli.input_files(args))  # before any work
    if args.plot:
        plot.require_matplotlib()
    dtype, task = np.dtype(args.dtype), DATASETS[args.data].task
    rng = np.random.default_rng(args.seed)  # draws the weights, then the shuffles and dropout masks
    arch = Arch(args.activation, args.batchnorm, args.dropout, sigmoid_output=args.loss == "bce")
    with memory.allocating(cli.layer_sizes(args), args.dtype, args.batchnorm):
        params = init_params(cli.layer_sizes(args), rng, dtype, batchnorm=args.batchnorm)
    model = Network(params, arch, init_buffers(params), rng)
    if args.load:
        checkpoint.load(args.load, model, allow_nonfinite=args.allow_nonfinite)
    if args.summary:
        print(summarize(model))
        return 0
    data = datasets.load(args.data, args.seed, dtype, args.data_dir, args.limit)
    optimizer = make_optimizer(args.optimizer, params, args.lr, momentum=args.momentum, nesterov=args.nesterov,
                               weight_decay=args.weight_decay)
    schedule = CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" and args.epochs else None
    train = data.train or data.fresh(1)
    header = cli.describe_run("scratch", args, len(train[0]), 0 if data.test is None else len(data.test[0]))
    if not args.json:
        print(header, flush=True)

    def report(record):
        if cli.should_print(record["epoch"], args.epochs, args.print_every):
            cli.report_epoch(record, args.epochs, args.json)

    history = fit(model, optimizer, data.train, data.test, args.epochs, args.batch_size, rng, on_epoch=report,
                  loss=args.loss, schedule=schedule, task=task, fresh=data.fresh)
    if args.epochs == 0:  # evaluate only: the loaded (or freshly drawn) model
        train_acc, test_acc, test_mse = epoch_figures(model, train, data.test, task, args.loss)
        loss = mean_loss(model, iterate_minibatches(*train, cli.EVAL_BATCH), args.loss)
        history = [cli.epoch_record(0, loss, train_acc, test_acc, 0.0, test_mse)]
        cli.report_epoch(history[0], 0, args.json)
    if args.save:
        checkpoint.save(args.save, model)
        if not args.json:
            print(f"saved the model to {args.save}", flush=True)
    if args.preset and PRESETS[args.preset].probe:
        run_probe(args, model)
    if args.plot:
        plot.plot_history({"scratch": history}, args.plot, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m scratch.train"))
