"""Train the NumPy twin on MNIST: python -m scratch.train [--epochs 20 --hidden 128 64 ...]

Twin: torchimpl/train.py takes the same flags and prints the same lines. One training step is
forward, loss, backward, optimizer step, the four lines torch writes as model(x), loss_fn,
loss.backward(), optimizer.step().
"""

import time

import numpy as np

from common import cli
from common.errors import InputError, run_cli
from scratch.data import check_dataset, iterate_minibatches, load_mnist
from scratch.losses import binary_cross_entropy, binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from scratch.model import Arch, init_buffers, init_params, forward, backward, layer_sizes_of, predict
from scratch.optim import SGD, Adam, AdamW
from scratch.schedules import CosineAnnealingLR

EVAL_BATCH = 1000  # evaluation batch: any size gives the same predictions, this one is fast
LOSSES = {"ce": softmax_cross_entropy, "bce": binary_cross_entropy,
          "bce-logits": binary_cross_entropy_with_logits, "mse": mse}

# ----------------------------------------------------------------------------- pieces of a run


def make_optimizer(name, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    if name == "sgd":
        return SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    return {"adam": Adam, "adamw": AdamW}[name](params, lr=lr, weight_decay=weight_decay)


def loss_targets(loss, y, out):
    """Class labels for cross-entropy; for the other losses, one-hot rows shaped like the output."""
    if loss == "ce" or not np.issubdtype(y.dtype, np.integer):
        return y
    return np.eye(out.shape[1], dtype=out.dtype)[y]  # N, C


# ----------------------------------------------------------------------------- one epoch


def train_epoch(params, optimizer, X, y, batch_size, rng, arch=Arch(), buffers=None, loss="ce", epoch=1):
    """One pass over (X, y) in shuffled minibatches; return the mean training loss per example.

    Stops at the first non-finite loss: the weights are already ruined, training on is waste.
    """
    total, batches = 0.0, iterate_minibatches(X, y, batch_size, rng)
    for step, (xb, yb) in enumerate(cli.progress(batches, total=-(-len(X) // batch_size), desc="train"), 1):
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging run is reported just below
            out, caches = forward(params, xb, arch, buffers, train=True, rng=rng)  # B, C
            value, dout = LOSSES[loss](out, loss_targets(loss, yb, out))
        if not np.isfinite(value):
            raise InputError(cli.diverged(epoch, step, value))
        grads, _ = backward(dout, caches)
        optimizer.step(grads)
        total += float(value) * len(yb)
    return total / len(X)


def evaluate(params, X, y, arch=Arch(), buffers=None):
    """Accuracy of the model on (X, y), in evaluation mode."""
    correct = 0
    for xb, yb in iterate_minibatches(X, y, EVAL_BATCH):
        correct += int((predict(params, xb, arch, buffers) == yb).sum())
    return correct / len(X)


# ----------------------------------------------------------------------------- the run


def fit(params, optimizer, train, test, epochs, batch_size, rng, on_epoch=None,
        arch=Arch(), buffers=None, loss="ce", schedule=None):
    """Train for `epochs`, evaluating after each; return the list of per-epoch records."""
    (X, y), (X_test, y_test) = train, test
    sizes = layer_sizes_of(params)
    check_dataset(X, y, sizes[0], sizes[-1])
    check_dataset(X_test, y_test, sizes[0], sizes[-1])
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(params, optimizer, X, y, batch_size, rng, arch, buffers, loss, epoch)
        seconds = time.perf_counter() - start
        if schedule is not None:
            schedule.step()  # once per epoch, after the optimizer's steps
        record = cli.epoch_record(epoch, train_loss, evaluate(params, X, y, arch, buffers),
                                  evaluate(params, X_test, y_test, arch, buffers), seconds)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


def main(argv=None):
    args = cli.parse_args(cli.build_parser("python -m scratch.train", __doc__.splitlines()[0]), argv)
    dtype = np.dtype(args.dtype)
    X, y = load_mnist(args.data_dir, "train")
    X_test, y_test = load_mnist(args.data_dir, "test")
    if args.limit is not None:
        if args.limit > len(X):
            raise InputError(f"--limit {args.limit} exceeds the {len(X)} training images")
        X, y = X[:args.limit], y[:args.limit]
    X, X_test = X.astype(dtype), X_test.astype(dtype)

    rng = np.random.default_rng(args.seed)
    arch = Arch(args.activation, args.batchnorm, args.dropout, sigmoid_output=args.loss == "bce")
    params = init_params(cli.layer_sizes(args), rng, dtype, batchnorm=args.batchnorm)
    buffers = init_buffers(params)
    optimizer = make_optimizer(args.optimizer, params, args.lr, args.momentum, args.nesterov, args.weight_decay)
    schedule = CosineAnnealingLR(optimizer, T_max=args.epochs) if args.schedule == "cosine" else None
    if not args.json:
        print(cli.describe_run("scratch", args, len(X), len(X_test)), flush=True)
    fit(params, optimizer, (X, y), (X_test, y_test), args.epochs, args.batch_size, rng,
        lambda record: cli.report_epoch(record, args.epochs, args.json), arch, buffers, args.loss, schedule)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m scratch.train"))
