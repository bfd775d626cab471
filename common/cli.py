"""The command line both twins share: the same flags, the same printed lines.

`python -m scratch.train` and `python -m torchimpl.train` build their parser here and print
each epoch through `report_epoch`, so the two programs can be run and read side by side.
"""

import argparse
import json
import sys

from common.idx import DEFAULT_DATA_DIR

N_FEATURES, N_CLASSES = 784, 10  # MNIST: 28 x 28 pixels in, ten digits out


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def add_model_flags(parser):
    """The flags that define a run: the network, the optimizer, the data. Shared with parity."""
    parser.add_argument("--hidden", type=positive_int, nargs="*", default=[128, 64],
                        metavar="H", help="hidden layer widths (default: 128 64)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="minibatch size (default: 64)")
    parser.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default: 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default: 0)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder with the four MNIST .gz files (default: data/mnist in the repository)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="floating-point precision (default: float32)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="train on the first N training images only")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line instead of text")
    return parser


def build_parser(prog, description, device=False):
    """The training programs' parser: the model flags plus --epochs (and --device for torch)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--epochs", type=positive_int, default=20, help="training epochs (default: 20)")
    add_model_flags(parser)
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: auto)")
    return parser


def layer_sizes(args):
    return [N_FEATURES, *args.hidden, N_CLASSES]


def describe_run(name, args, n_train, n_test, extra=""):
    """The line printed before the first epoch, the same on both twins but for the name."""
    sizes = "-".join(map(str, layer_sizes(args)))
    return (f"{name}: {sizes} ReLU, SGD lr {args.lr:g}, batch {args.batch_size}, {args.dtype}, "
            f"{n_train} train / {n_test} test images{extra}")


def epoch_record(epoch, train_loss, train_acc, test_acc, seconds):
    return {"epoch": epoch, "train_loss": float(train_loss), "train_acc": float(train_acc),
            "test_acc": float(test_acc), "seconds": float(seconds)}


def format_epoch(record, epochs):
    width = len(str(epochs))
    return (f"epoch {record['epoch']:>{width}}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"train acc {record['train_acc']:.4f}  test acc {record['test_acc']:.4f}  "
            f"{record['seconds']:.2f}s")


def report_epoch(record, epochs, as_json):
    print(json.dumps(record) if as_json else format_epoch(record, epochs), flush=True)


def progress(iterable, total, desc):
    """A tqdm bar when stdout is a terminal, the bare iterable otherwise (logs, pipes, tests)."""
    if not sys.stdout.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch")
