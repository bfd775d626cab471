"""Train the PyTorch twin on MNIST: python -m torchimpl.train [--epochs 20 --device auto ...]

Twin: scratch/train.py takes the same flags and prints the same lines. The step is the standard
four: optimizer.zero_grad(), loss = loss_fn(model(x), y), loss.backward(), optimizer.step().
"""

import time

import torch
from torch import nn
from torch.nn import functional as F

from common import cli
from common.errors import InputError, run_cli
from torchimpl.data import check_dataset, load_mnist, make_loader
from torchimpl.model import MLP

EVAL_BATCH = 1000  # evaluation batch: any size gives the same predictions, this one is fast
LOSSES = {"ce": nn.CrossEntropyLoss, "bce": nn.BCELoss, "bce-logits": nn.BCEWithLogitsLoss, "mse": nn.MSELoss}

# ----------------------------------------------------------------------------- pieces of a run


def make_optimizer(name, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name](params, lr=lr, weight_decay=weight_decay)


def loss_targets(loss, y, out):
    """Class labels for cross-entropy; for the other losses, one-hot rows shaped like the output.

    Shapes are checked here, before torch sees them: nn.MSELoss would broadcast (N, 1) against
    (N,) to (N, N) with only a warning.
    """
    target = y if loss == "ce" or y.is_floating_point() else F.one_hot(y, out.shape[1]).to(out.dtype)
    if loss != "ce" and target.shape != out.shape:
        raise InputError(f"{loss}: predictions have shape {tuple(out.shape)} but targets have "
                         f"{tuple(target.shape)}; torch would broadcast them: reshape the targets "
                         f"to {tuple(out.shape)}")
    return target


# ----------------------------------------------------------------------------- one epoch


def train_epoch(model, loader, optimizer, loss_fn, device, loss="ce", epoch=1):
    """One pass over the loader; return the mean training loss per example.

    Stops at the first non-finite loss: the weights are already ruined, training on is waste.
    """
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for step, (xb, yb) in enumerate(cli.progress(loader, total=len(loader), desc="train"), 1):
        xb, yb = xb.to(device), yb.to(device)
        optimizer.zero_grad()
        out = model(xb)
        value = loss_fn(out, loss_targets(loss, yb, out))
        if not torch.isfinite(value):
            raise InputError(cli.diverged(epoch, step, value.item()))
        value.backward()
        optimizer.step()
        total += value.detach() * len(yb)
    return total.item() / len(loader.dataset)


@torch.no_grad()
def evaluate(model, loader, device):
    """Accuracy of the model on the loader's data, in evaluation mode."""
    model.eval()
    correct = 0
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        correct += (model(xb).argmax(dim=1) == yb).sum().item()
    return correct / len(loader.dataset)


# ----------------------------------------------------------------------------- the run


def fit(model, optimizer, train, test, epochs, batch_size, generator, device, on_epoch=None,
        loss="ce", schedule=None):
    """Train for `epochs`, evaluating after each; return the list of per-epoch records."""
    (X, y), (X_test, y_test) = train, test
    check_dataset(X, y, model.layer_sizes[0], model.layer_sizes[-1])
    check_dataset(X_test, y_test, model.layer_sizes[0], model.layer_sizes[-1])
    loss_fn = LOSSES[loss]()
    train_loader = make_loader(X, y, batch_size, generator)
    train_eval, test_eval = make_loader(X, y, EVAL_BATCH), make_loader(X_test, y_test, EVAL_BATCH)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(model, train_loader, optimizer, loss_fn, device, loss, epoch)
        seconds = time.perf_counter() - start
        if schedule is not None:
            schedule.step()  # once per epoch, after the optimizer's steps
        record = cli.epoch_record(epoch, train_loss, evaluate(model, train_eval, device),
                                  evaluate(model, test_eval, device), seconds)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


def pick_device(name):
    """'auto' picks cuda, then mps, then cpu; anything else must name an available device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for but CUDA is not available here: use --device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {name!r} asked for but MPS is not available here: use --device cpu")
    return device


def main(argv=None):
    args = cli.parse_args(cli.build_parser("python -m torchimpl.train", __doc__.splitlines()[0], device=True), argv)
    device, dtype = pick_device(args.device), getattr(torch, args.dtype)
    X, y = load_mnist(args.data_dir, "train")
    X_test, y_test = load_mnist(args.data_dir, "test")
    if args.limit is not None:
        if args.limit > len(X):
            raise InputError(f"--limit {args.limit} exceeds the {len(X)} training images")
        X, y = X[:args.limit], y[:args.limit]
    X, X_test = X.to(dtype), X_test.to(dtype)

    torch.manual_seed(args.seed)
    model = MLP(cli.layer_sizes(args), args.activation, args.batchnorm, args.dropout,
                sigmoid_output=args.loss == "bce").to(device=device, dtype=dtype)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum, args.nesterov,
                               args.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" else None
    generator = torch.Generator().manual_seed(args.seed)
    if not args.json:
        print(cli.describe_run("torchimpl", args, len(X), len(X_test), f", {device}"), flush=True)
    fit(model, optimizer, (X, y), (X_test, y_test), args.epochs, args.batch_size, generator, device,
        lambda record: cli.report_epoch(record, args.epochs, args.json), args.loss, schedule)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m torchimpl.train"))
