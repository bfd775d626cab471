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
from scratch.losses import softmax_cross_entropy
from scratch.model import backward, forward, init_params, layer_sizes_of, predict
from scratch.optim import SGD

EVAL_BATCH = 1000  # evaluation batch: any size gives the same predictions, this one is fast

# ----------------------------------------------------------------------------- one epoch


def train_epoch(params, optimizer, X, y, batch_size, rng):
    """One pass over (X, y) in shuffled minibatches; return the mean training loss per example."""
    total, batches = 0.0, iterate_minibatches(X, y, batch_size, rng)
    for xb, yb in cli.progress(batches, total=-(-len(X) // batch_size), desc="train"):
        logits, caches = forward(params, xb)  # B, C
        loss, dlogits = softmax_cross_entropy(logits, yb)
        grads, _ = backward(dlogits, caches)
        optimizer.step(grads)
        total += float(loss) * len(yb)
    return total / len(X)


def evaluate(params, X, y):
    """Accuracy of the model on (X, y)."""
    correct = 0
    for xb, yb in iterate_minibatches(X, y, EVAL_BATCH):
        correct += int((predict(params, xb) == yb).sum())
    return correct / len(X)


# ----------------------------------------------------------------------------- the run


def fit(params, optimizer, train, test, epochs, batch_size, rng, on_epoch=None):
    """Train for `epochs`, evaluating after each; return the list of per-epoch records."""
    (X, y), (X_test, y_test) = train, test
    sizes = layer_sizes_of(params)
    check_dataset(X, y, sizes[0], sizes[-1])
    check_dataset(X_test, y_test, sizes[0], sizes[-1])
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_loss = train_epoch(params, optimizer, X, y, batch_size, rng)
        seconds = time.perf_counter() - start
        record = cli.epoch_record(epoch, train_loss, evaluate(params, X, y),
                                  evaluate(params, X_test, y_test), seconds)
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
    return history


def main(argv=None):
    args = cli.build_parser("python -m scratch.train", __doc__.splitlines()[0]).parse_args(argv)
    dtype = np.dtype(args.dtype)
    X, y = load_mnist(args.data_dir, "train")
    X_test, y_test = load_mnist(args.data_dir, "test")
    if args.limit is not None:
        if args.limit > len(X):
            raise InputError(f"--limit {args.limit} exceeds the {len(X)} training images")
        X, y = X[:args.limit], y[:args.limit]
    X, X_test = X.astype(dtype), X_test.astype(dtype)

    rng = np.random.default_rng(args.seed)
    params = init_params(cli.layer_sizes(args), rng, dtype)
    optimizer = SGD(params, lr=args.lr)
    if not args.json:
        print(cli.describe_run("scratch", args, len(X), len(X_test)), flush=True)
    fit(params, optimizer, (X, y), (X_test, y_test), args.epochs, args.batch_size, rng,
        on_epoch=lambda record: cli.report_epoch(record, args.epochs, args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m scratch.train"))
