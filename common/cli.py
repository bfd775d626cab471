"""The command line both twins share: the same flags, the same printed lines.

`python -m scratch.train` and `python -m torchimpl.train` build their parser here and print
each epoch through `report_epoch`, so the two programs can be run and read side by side.
"""

import argparse
import json
import sys
from pathlib import Path

from common.errors import InputError
from common.memory import check_memory
from common.idx import DEFAULT_DATA_DIR, FILES
from common.layout import ACTIVATION_MODULES, OPTIMIZER_CLASSES
from common.presets import DATASETS, PRESETS, preset_help, size_text

N_FEATURES, N_CLASSES = 784, 10  # MNIST: 28 x 28 pixels in, ten digits out


# The largest count (--epochs, --batch-size, --limit, widths, ...) and the largest real number
# (--lr, --momentum, --weight-decay) a flag takes: the most that every twin handles. torch keeps
# sizes in int32 in places and turns a scalar into the tensor's dtype (float32 by default), where
# a larger lr raises "value cannot be converted to type float without overflow".
MOST_INT, MOST_FLOAT = 2**31 - 1, 3.4028234663852886e38  # int32's and float32's largest
MOST_SEED = 2**32 - 1  # scikit-learn's random_state limit; NumPy and torch take it too


def number_type(kind, accept, requirement, most=None):
    """An argparse type: text parsed as int or float, then held to accept(value), which must
    be true, and to value <= most; otherwise a one-line message saying what the flag needs and
    what it got."""
    noun = "a whole number" if kind is int else "a number"
    shown = most if kind is int or most is None else f"{most:.5g}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text.strip()}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {shown} (the largest every twin handles), "
                                             f"got {text.strip()}")
        return value

    return parse


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a bad flag is one line, 'prog: error: message', as every other
    bad input is (common.errors.run_cli); the usage is left to --help."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


INF = float("inf")
positive_int = number_type(int, lambda v: v > 0, "a positive whole number", MOST_INT)
non_negative_int = number_type(int, lambda v: v >= 0, "a whole number >= 0", MOST_INT)
positive_float = number_type(float, lambda v: 0 < v < INF, "a positive finite number", MOST_FLOAT)
unit_interval = number_type(float, lambda v: 0 <= v < 1, "at least 0 and below 1")
non_negative_float = number_type(float, lambda v: 0 <= v < INF, "a finite number >= 0", MOST_FLOAT)
seed = number_type(int, lambda v: 0 <= v <= MOST_SEED, f"a whole number from 0 to {MOST_SEED} (2**32 - 1)")


ACTIVATIONS = list(ACTIVATION_MODULES)
OPTIMIZERS = list(OPTIMIZER_CLASSES)
LOSSES = ["ce", "bce", "bce-logits", "mse"]
DEFAULT_LR = {"sgd": 0.5, "adam": 1e-3, "adamw": 1e-3}  # SGD: the textbook's; Adam(W): torch's
DEFAULT_WEIGHT_DECAY = {"sgd": 0.0, "adam": 0.0, "adamw": 1e-2}  # torch's defaults


EVAL_BATCH = 1000  # evaluation batch: any size gives the same predictions, this one is fast
CORE_SETTINGS = {"activation": "relu", "batchnorm": False, "dropout": 0.0, "loss": "ce", "optimizer": "sgd",
                 "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "none", "dtype": "float32"}


def add_core_flags(parser, epochs=True):
    """The flags of the default recipe: epochs, network widths, SGD's lr, batch, seed, data."""
    if epochs:
        parser.add_argument("--epochs", type=non_negative_int, default=20, help="training epochs (default: 20)")
    parser.add_argument("--hidden", type=positive_int, nargs="*", default=[128, 64],
                        metavar="H", help="hidden layer widths (default: 128 64)")
    parser.add_argument("--lr", type=positive_float, default=DEFAULT_LR["sgd"],
                        help=f"learning rate (default: {DEFAULT_LR['sgd']:g})")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="minibatch size (default: 64)")
    parser.add_argument("--seed", type=seed, default=0,
                        help=f"seed for weights, shuffling and dropout, 0 to {MOST_SEED} (default: 0)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="folder with the four MNIST .gz files (default: data/mnist in the repository)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="train on the first N training images only")
    return parser


def core_parser(prog, description):
    """The parser of the core programs (python -m scratch.mlp / torchimpl.mlp): the default
    recipe's flags; the toolbox's choices stay at CORE_SETTINGS, so describe_run can name them."""
    parser = add_core_flags(Parser(prog=prog, description=description))
    parser.set_defaults(**CORE_SETTINGS)
    return parser


def add_model_flags(parser, epochs=False):
    """The flags that define a run: the core's, then the toolbox's (network, optimizer, loss,
    precision). Shared with parity, which takes no --epochs."""
    add_core_flags(parser, epochs)
    actions = {action.dest: action for action in parser._actions}
    actions["lr"].default, actions["lr"].help = None, "learning rate (default: 0.5 for sgd, 0.001 for adam and adamw)"
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden activation (default: relu)")
    parser.add_argument("--batchnorm", action="store_true", help="batch norm between each hidden Linear and its activation")
    parser.add_argument("--dropout", type=unit_interval, default=0.0, metavar="P",
                        help="dropout probability after each hidden activation (default: 0)")
    parser.add_argument("--loss", choices=LOSSES, default="ce",
                        help="ce: softmax cross-entropy on logits; bce: sigmoid outputs with binary "
                             "cross-entropy; bce-logits: binary cross-entropy on logits; mse: mean "
                             "squared error (bce, bce-logits and mse against one-hot targets) (default: ce)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="(default: sgd)")
    parser.add_argument("--momentum", type=non_negative_float, default=0.0, help="SGD momentum (default: 0)")
    parser.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD, needs --momentum)")
    parser.add_argument("--weight-decay", type=non_negative_float, default=None,
                        help="weight decay (default: 0, or 0.01 for adamw as in torch)")
    parser.add_argument("--schedule", choices=["none", "cosine"], default="none",
                        help="cosine: anneal the lr to 0 over the epochs, stepped once per epoch (default: none)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                        help="floating-point precision (default: float32)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line instead of text")
    return parser


def add_preset_flags(parser):
    """--preset and --data: which chapter's example, which data set. Applied by parse_args."""
    parser.add_argument("--preset", choices=list(PRESETS), default=None, help=preset_help())
    parser.add_argument("--data", choices=list(DATASETS), default="mnist",
                        help="the data set: mnist (the files in --data-dir), or one generated from "
                             "--seed: edges (5x5 patches), student (four students), sum (y = sum(x)) "
                             "(default: mnist, or the preset's)")
    return parser


def finish_args(parser, args):
    """Fill the defaults that depend on the optimizer and refuse combinations that make no sense."""
    data = getattr(args, "data", "mnist")
    if args.loss not in DATASETS[data].losses:
        parser.error(f"--loss {args.loss} does not fit the {data} data ({DATASETS[data].task}): "
                     f"use one of {', '.join(DATASETS[data].losses)}")
    if DATASETS[data].fresh_rows and args.limit is not None:
        parser.error(f"--limit does not apply to the {data} data: it draws fresh rows every epoch")
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    if args.weight_decay is None:
        args.weight_decay = DEFAULT_WEIGHT_DECAY[args.optimizer]
    if args.optimizer != "sgd" and (args.momentum or args.nesterov):
        parser.error(f"--momentum and --nesterov belong to sgd, not {args.optimizer} (Adam's betas are fixed at torch's defaults)")
    if args.nesterov and args.momentum == 0:
        parser.error("--nesterov needs --momentum above 0")
    return args


def build_parser(prog, description, device=False):
    """The training programs' parser: the model and preset flags, --epochs, the files
    (--save, --load, --allow-nonfinite, --plot), --summary, --print-every (and --device for torch)."""
    parser = Parser(prog=prog, description=description)
    add_model_flags(parser, epochs=True)
    epochs = next(action for action in parser._actions if action.dest == "epochs")
    epochs.help = ("training epochs; 0 evaluates the model (with --load: the loaded one) without "
                   "training (default: 20, or the preset's)")
    add_preset_flags(parser)
    parser.add_argument("--print-every", type=positive_int, default=1, metavar="K",
                        help="print epoch 1, 1 + K, 1 + 2K, ... and the last (default: 1, or the preset's)")
    parser.add_argument("--save", metavar="PATH", default=None,
                        help="after training, write the model to PATH (scratch: .npz; torchimpl: a "
                             "state_dict via torch.save); the write is atomic")
    parser.add_argument("--load", metavar="PATH", default=None,
                        help="start from the model in PATH, written by either twin, or the state_dict of "
                             "any Linear-only MLP (its tensors matched to the layers by order and shape, "
                             "the mapping noted on stderr); it must fit the network the flags build")
    parser.add_argument("--allow-nonfinite", action="store_true",
                        help="load a model whose weights hold NaN or inf (refused otherwise)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="after training, draw the per-epoch training loss and test accuracy "
                             "(test MSE for sum) into a PNG at PATH (needs matplotlib)")
    parser.add_argument("--summary", action="store_true",
                        help="print the layer table and parameter count, then exit without training")
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps (default: auto)")
    return parser


def parse_args(parser, argv):
    """Parse argv; with --preset NAME, parse again with the preset's settings as the defaults,
    so that the flags given explicitly still override them. A network too large for this
    machine is refused here, before any work (parity checks float64 unless told one dtype;
    with --module it builds the module's network, not the flags')."""
    args = parser.parse_args(argv)
    if getattr(args, "preset", None):
        dests = {action.dest for action in parser._actions}
        parser.set_defaults(**{k: v for k, v in PRESETS[args.preset].settings.items() if k in dests})
        args = parser.parse_args(argv)
    args = finish_args(parser, args)
    if not getattr(args, "module", None):
        check_memory(layer_sizes(args), args.dtype or "float64", args.batchnorm)
    return args


def layer_sizes(args):
    data = DATASETS[getattr(args, "data", "mnist")]
    return [data.inputs, *args.hidden, data.outputs]


def input_files(args, mnist=False):
    """{flag: paths} of the files a run reads, which no output may replace: --load's model and,
    for MNIST (or always, with mnist=True), the four files in --data-dir (common.idx.FILES;
    missing ones are named later, when the data is read)."""
    reads_mnist = mnist or getattr(args, "data", "mnist") == "mnist"
    data = [Path(args.data_dir) / name for names in FILES.values() for name in names] if reads_mnist else []
    return {"--load": getattr(args, "load", None), "--data-dir": data}


def limited(pair, limit, noun="images"):
    """The first `limit` rows of (X, y), arrays or tensors; all of them when limit is None."""
    X, y = pair
    if limit is None:
        return X, y
    if limit > len(X):
        raise InputError(f"--limit {limit} exceeds the {len(X)} training {noun}")
    return X[:limit], y[:limit]


def describe_run(name, args, n_train, n_test, extra=""):
    """The line printed before the first epoch, the same on both twins but for the name."""
    data = getattr(args, "data", "mnist")
    net = "-".join(map(str, layer_sizes(args))) + f" {args.activation}"
    net += " batchnorm" * args.batchnorm + (f" dropout {args.dropout:g}" if args.dropout else "")
    opt = f"{args.optimizer} lr {args.lr:g}"
    opt += f" momentum {args.momentum:g}" if args.momentum else ""
    opt += " nesterov" * args.nesterov + (f" weight decay {args.weight_decay:g}" if args.weight_decay else "")
    opt += " cosine" if args.schedule == "cosine" else ""
    preset = f", preset {args.preset}" if getattr(args, "preset", None) else ""
    return (f"{name}: {net}, {opt}, {args.loss} loss, batch {args.batch_size}, {args.dtype}, "
            f"{size_text(data, n_train, n_test)}{preset}{extra}")


def epoch_record(epoch, train_loss, train_acc, test_acc, seconds, test_mse=None):
    """One epoch's figures. An accuracy is None where the task has none (regression) or there
    is no test set (student); regression adds test_mse, the mean squared error on the test set."""
    record = {"epoch": epoch, "train_loss": float(train_loss),
              "train_acc": None if train_acc is None else float(train_acc),
              "test_acc": None if test_acc is None else float(test_acc), "seconds": float(seconds)}
    if test_mse is not None:
        record["test_mse"] = float(test_mse)
    return record


def _figure(value):
    return "-" if value is None else f"{value:.4f}"


def format_epoch(record, epochs):
    width = len(str(epochs))
    mse = f"test mse {record['test_mse']:.6f}  " if "test_mse" in record else ""
    return (f"epoch {record['epoch']:>{width}}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"train acc {_figure(record['train_acc'])}  test acc {_figure(record['test_acc'])}  "
            f"{mse}{record['seconds']:.2f}s")


def should_print(epoch, epochs, every):
    """Epoch 1, 1 + every, 1 + 2 every, ... and the last: the chapters' `epoch % 100 == 0`
    counted from 0 (their printed loss is the one computed during that epoch)."""
    return epoch == epochs or (epoch - 1) % every == 0


def report_epoch(record, epochs, as_json):
    print(json.dumps(record) if as_json else format_epoch(record, epochs), flush=True)


def progress(iterable, total, desc):
    """A tqdm bar when stdout is a terminal, the bare iterable otherwise (logs, pipes, tests)."""
    if not sys.stdout.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, unit="batch")


# What diverged() says in place of the loss when an update, not the loss, went non-finite.
WEIGHTS_OVERFLOWED = "finite, but by this step's update the weights overflowed to inf or nan"


def check_step_sizes(lr, betas, weight_decay, decoupled, dtype):
    """Refuse a step size float32 cannot hold (Adam's first is lr / (1 - beta1), AdamW's decay
    1 - lr * weight_decay): torch raises on it, NumPy would round it to inf."""
    sizes = [lr, weight_decay, *([lr / (1 - betas[0])] if betas else []), *([1 - lr * weight_decay] if decoupled else [])]
    largest = max(abs(size) for size in sizes)
    if dtype == "float32" and MOST_FLOAT < largest < float("inf"):
        raise InputError(f"lr {lr:g} makes a step size of {largest:.3g}, more than float32 holds "
                         f"({MOST_FLOAT:.3g}, torch refuses it): lower the learning rate (--lr) or use float64")


def diverged(epoch, step, value):
    """The message for a loss that became nan or inf: where, what, and what to try."""
    return (f"training stopped at epoch {epoch}, step {step}: the loss is {value}; the run "
            f"diverged, lower the learning rate (--lr) or check the inputs for extreme values")
