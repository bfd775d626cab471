"""Train the PyTorch twin: python -m torchimpl.train [--preset NAME] [--epochs 20 --device auto ...]

Twin: scratch/train.py takes the same flags and prints the same lines. The step is the core's
(torchimpl/mlp.py: optimizer.zero_grad(), loss_fn(model(x), y), loss.backward(), optimizer.step())
with the toolbox's modules; with every option at its default this program trains exactly what
python -m torchimpl.mlp trains. MNIST by default; --preset runs one of the chapters' examples
(common/presets.py); --save, --load, --plot and --summary handle the model's files.
"""

import json
import re
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from common import cli, memory, outputs, plot, summary
from common.errors import InputError, run_cli
from common.presets import DATASETS, PRESETS
from torchimpl.extras import checkpoint, datasets
from torchimpl.data import check_dataset, make_loader
from torchimpl.toolbox.model import MLP

LOSSES = {"ce": nn.CrossEntropyLoss, "bce": nn.BCELoss, "bce-logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss}

# ----------------------------------------------------------------------------- pieces of a run


def make_optimizer(name, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](params, lr=lr, weight_decay=weight_decay)


def loss_targets(loss, y, out):
    """Class labels for cross-entropy; for the other losses, one-hot rows shaped like the output
    (float targets, as the student and sum data have, pass through).

    Shapes are checked here, before torch sees them: nn.MSELoss would broadcast (N, 1) against
    (N,) to (N, N) with only a warning.
    """
    target = y if loss == "ce" or y.is_floating_point() else F.one_hot(y, out.shape[1]).to(out.dtype)
    if loss != "ce" and target.shape != out.shape:
        raise InputError(f"{loss}: predictions have shape {tuple(out.shape)} but targets have "
                         f"{tuple(target.shape)}; torch would broadcast them: reshape the targets "
                         f"to {tuple(out.shape)}")
    return target


def check_targets(X, y, n_features, n_outputs):
    """Raise InputError unless X is (N, n_features) finite floats and y (N, n_outputs) floats."""
    if X.ndim != 2 or X.shape[1] != n_features or len(X) == 0:
        raise InputError(f"inputs must have shape (N, {n_features}) with N > 0, got {tuple(X.shape)}")
    if not X.is_floating_point() or not torch.isfinite(X).all():
        raise InputError("inputs must be finite floating-point numbers")
    if tuple(y.shape) != (len(X), n_outputs) or not y.is_floating_point():
        raise InputError(f"targets must be floats shaped ({len(X)}, {n_outputs}) like the outputs, "
                         f"got {y.dtype} {tuple(y.shape)}")


# ----------------------------------------------------------------------------- one epoch


def train_epoch(model, optimizer, batches, loss="ce", epoch=1):
    """One pass over the batches (a DataLoader) in training mode; the mean training loss per example.

    Stops with cli.diverged's message at the first non-finite loss, or at the step whose update
    left a weight inf or nan: the run has diverged, training on is waste.
    """
    model.train()
    device, loss_fn = next(model.parameters()).device, LOSSES[loss]()
    group = optimizer.param_groups[0]
    cli.check_step_sizes(group["lr"], group.get("betas"), group.get("weight_decay", 0.0),
                      group.get("decoupled_weight_decay", False), str(next(model.parameters()).dtype)[len("torch."):])
    total, n, step = torch.zeros((), dtype=torch.float64, device=device), 0, 0
    for step, (xb, yb) in enumerate(batches, 1):
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        out = model(xb)  # B, C
        try:
            value = loss_fn(out, loss_targets(loss, yb, out))
        except RuntimeError:  # BCELoss refuses a nan output as no probability: the weights overflowed
            if torch.isfinite(out).all():
                raise
            value = torch.tensor(float("nan"))
        if not torch.isfinite(value):
            # A weight the last update made inf or nan shows here, in this step's loss (inf * 0
            # is nan): the weights are scanned only then, not after every step.
            if step > 1 and not _finite_weights(model):
                raise InputError(cli.diverged(epoch, step - 1, cli.WEIGHTS_OVERFLOWED))
            raise InputError(cli.diverged(epoch, step, value.item()))
        value.backward()
        try:
            optimizer.step()
        except RuntimeError as err:
            # a step size past its dtype: cli.check_step_sizes refuses the ones known beforehand
            if "without overflow" not in str(err):
                raise
            raise InputError(cli.diverged(epoch, step, f"finite, but torch cannot hold this step's update "
                                                       f"in {out.dtype}")) from None
        total, n = total + value.detach() * len(yb), n + len(yb)
    # The last update has no next loss, and a unit saturated by an inf weight (tanh, a ReLU held
    # at 0 by a -inf bias) hides it from every loss: one scan per epoch catches both.
    if not _finite_weights(model):
        raise InputError(cli.diverged(epoch, step, cli.WEIGHTS_OVERFLOWED))
    return total.item() / n


@torch.no_grad()
def _finite_weights(model):
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@torch.no_grad()
def evaluate(model, batches, task="classes", loss="ce"):
    """In evaluation mode: the accuracy (classes: the largest output; binary: the output above
    0.5, or above 0 for bce-logits' logits), or for regression the mean squared error."""
    model.eval()
    device = next(model.parameters()).device
    total, n, threshold = 0.0, 0, 0.0 if loss == "bce-logits" else 0.5
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        out = model(xb)  # B, C
        if task == "classes":
            total, n = total + (out.argmax(dim=1) == yb).sum().item(), n + len(yb)
        else:
            hits = ((out > threshold) == (yb > 0.5)).sum() if task == "binary" else ((out - yb) ** 2).sum()
            total, n = total + hits.item(), n + yb.numel()
    return total / n


@torch.no_grad()
def mean_loss(model, batches, loss="ce"):
    """The loss over the batches in evaluation mode, per example: what --epochs 0 reports."""
    model.eval()
    device, loss_fn = next(model.parameters()).device, LOSSES[loss]()
    total, n = 0.0, 0
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        out = model(xb)
        total, n = total + loss_fn(out, loss_targets(loss, yb, out)).item() * len(yb), n + len(yb)
    return total / n


# ----------------------------------------------------------------------------- the run


def epoch_figures(model, train, test, task="classes", loss="ce"):
    """(train accuracy, test accuracy, test MSE) on the (X, y) pairs, each None where the task
    has none (or there is no test set)."""
    def score(pair):
        return evaluate(model, make_loader(*pair, cli.EVAL_BATCH), task, loss)

    if task == "regression":
        return None, None, score(test)
    return score(train), None if test is None else score(test), None


def fit(model, optimizer, train, test, epochs, batch_size, rng, on_epoch=None, loss="ce", schedule=None,
        task="classes", fresh=None):
    """Train for `epochs`, evaluating after each; return the list of per-epoch records.

    rng (a torch.Generator) shuffles the batches; fresh(epoch), where given, supplies each
    epoch's own training rows (train may then be None).
    """
    check = check_dataset if task == "classes" else check_targets
    for pair in (train, test, fresh(1) if fresh else None):
        if pair is not None:
            check(*pair, model.layer_sizes[0], model.layer_sizes[-1])
    history = []
    for epoch in range(1, epochs + 1):
        X, y = fresh(epoch) if fresh else train
        loader = make_loader(X, y, batch_size, rng)
        start = time.perf_counter()
        train_loss = train_epoch(model, optimizer, cli.progress(loader, len(loader), "train"), loss, epoch)
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
    """The --summary table: MLP.net's modules, their output widths and parameter counts."""
    rows, width = [], model.layer_sizes[0]
    for index, module in enumerate(model.net):
        width = module.out_features if isinstance(module, nn.Linear) else width
        rows.append((f"net.{index}", type(module).__name__, width, sum(p.numel() for p in module.parameters())))
    return summary.format_summary(rows, sum(b.numel() for b in model.buffers()))


def run_probe(args, model):
    """The preset's closing question: reload the model where the chapter does, then print the
    outputs for the probe's inputs."""
    probe, weight = PRESETS[args.preset].probe, next(model.parameters())
    if probe.reload:
        with tempfile.TemporaryDirectory() as folder:
            path = args.save or str(Path(folder) / "model.pt")
            if not args.save:
                checkpoint.save(path, model)
            model = MLP(model.layer_sizes, args.activation, args.batchnorm, args.dropout,
                        sigmoid_output=args.loss == "bce").to(device=weight.device, dtype=weight.dtype)
            checkpoint.load(path, model)
    model.eval()
    with torch.no_grad():
        out = model(datasets.probe_inputs(args.preset, weight.dtype).to(weight.device))
    if args.loss == "bce-logits":  # the model gives logits: the probability is their sigmoid
        out = torch.sigmoid(out)
    for value in out[:, 0].tolist():
        print(json.dumps({"probe": probe.text, "reloaded": probe.reload, "output": value}) if args.json
              else f"{'reloaded model: ' if probe.reload else ''}{probe.text}: {value:.4f}", flush=True)


def pick_device(name):
    """'auto' picks cuda, then mps, then cpu; anything else must name an available device: cpu,
    cuda, cuda:N (N below the number of CUDA devices) or mps. torch.device also takes meta, xla
    and others, on which this program cannot train: they are refused here, before any work."""
    name, mps = str(name), getattr(torch.backends, "mps", None)
    mps = mps is not None and mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    match = re.fullmatch(r"(cpu|mps|cuda)|cuda:(\d+)", name)
    if match is None:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    if match[2] is not None and int(match[2]) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise InputError(f"device {name!r} asked for but this machine has {count} CUDA device"
                         f"{'s' * (count != 1)} (cuda:0 to cuda:{count - 1}): use one of those")
    if name == "mps" and not mps:
        raise InputError(f"device {name!r} asked for but MPS is not available here: use --device cpu")
    return torch.device(name)


def main(argv=None):
    args = cli.parse_args(cli.build_parser("python -m torchimpl.train", __doc__.splitlines()[0], device=True), argv)
    outputs.check_outputs({"--save": args.save, "--plot": args.plot}, cli.input_files(args))  # before any work
    if args.plot:
        plot.require_matplotlib()
    device, dtype, task = pick_device(args.device), getattr(torch, args.dtype), DATASETS[args.data].task
    torch.manual_seed(args.seed)
    with memory.allocating(cli.layer_sizes(args), args.dtype, args.batchnorm):
        model = MLP(cli.layer_sizes(args), args.activation, args.batchnorm, args.dropout,
                    sigmoid_output=args.loss == "bce").to(device=device, dtype=dtype)
    if args.load:
        checkpoint.load(args.load, model, allow_nonfinite=args.allow_nonfinite)
    if args.summary:
        print(summarize(model))
        return 0
    data = datasets.load(args.data, args.seed, dtype, args.data_dir, args.limit)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, momentum=args.momentum,
                               nesterov=args.nesterov, weight_decay=args.weight_decay)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
                if args.schedule == "cosine" and args.epochs else None)
    generator = torch.Generator().manual_seed(args.seed)
    train = data.train or data.fresh(1)
    header = cli.describe_run("torchimpl", args, len(train[0]), 0 if data.test is None else len(data.test[0]),
                              f", {device}")
    if not args.json:
        print(header, flush=True)

    def report(record):
        if cli.should_print(record["epoch"], args.epochs, args.print_every):
            cli.report_epoch(record, args.epochs, args.json)

    history = fit(model, optimizer, data.train, data.test, args.epochs, args.batch_size, generator,
                  on_epoch=report, loss=args.loss, schedule=schedule, task=task, fresh=data.fresh)
    if args.epochs == 0:  # evaluate only: the loaded (or freshly drawn) model
        train_acc, test_acc, test_mse = epoch_figures(model, train, data.test, task, args.loss)
        loss = mean_loss(model, make_loader(*train, cli.EVAL_BATCH), args.loss)
        history = [cli.epoch_record(0, loss, train_acc, test_acc, 0.0, test_mse)]
        cli.report_epoch(history[0], 0, args.json)
    if args.save:
        checkpoint.save(args.save, model)
        if not args.json:
            print(f"saved the model to {args.save}", flush=True)
    if args.preset and PRESETS[args.preset].probe:
        run_probe(args, model)
    if args.plot:
        plot.plot_history({"torchimpl": history}, args.plot, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m torchimpl.train"))
