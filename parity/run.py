"""A parity run: a configuration, both twins built from the same weights, every check in one dtype.

`run(config)` is what `python -m parity` calls; parity/report.py prints its results. For each
dtype: one batch compared tensor by tensor, then K training steps on the same minibatch
sequence (and the same dropout masks), then both trained models on the test set. Try it:
    python -c "from parity.run import Config, run; print(run(Config(steps=20))[0].ok)"
    python -c "from parity.run import Config, run; print(run(Config(steps=100, limit=1280,
               batchnorm=True, dropout=0.2, optimizer='adamw', schedule='cosine'))[0].ok)"
"""

import itertools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from common.cli import DEFAULT_LR, DEFAULT_WEIGHT_DECAY, EVAL_BATCH, LOSSES, N_CLASSES, N_FEATURES, OPTIMIZERS
from common.errors import InputError
from common.presets import DATASETS
from parity import tolerances
from parity.compare import Record, compare, compare_one_batch, compare_training, training_check
from parity.convert import load_params_into
from parity.steps import draw_masks, scratch_eval, torch_eval, with_given_masks
from scratch.extras import datasets as scratch_datasets
from scratch.toolbox import model as scratch_model
from scratch.data import check_dataset, load_mnist
from scratch.train import check_targets
from torchimpl.toolbox.model import MLP

DTYPES = ("float64", "float32")

# ----------------------------------------------------------------------------- configuration


SCHEDULES = ("none", "cosine")


@dataclass(frozen=True)
class Config:
    """What defines a parity run: the training programs' flags. steps None: one epoch,
    ceil(N / batch_size) steps. lr and weight_decay None: the programs' defaults for the
    optimizer (common.cli: SGD lr 0.5; Adam and AdamW lr 1e-3; AdamW weight decay 1e-2)."""

    layer_sizes: tuple = (N_FEATURES, 128, 64, N_CLASSES)
    lr: float | None = None
    momentum: float = 0.0
    weight_decay: float | None = None
    nesterov: bool = False
    batch_size: int = 64
    seed: int = 0
    steps: int | None = None
    limit: int | None = None
    data_dir: str | None = None
    dtypes: tuple = DTYPES
    drift_every: int = 100
    activation: str = "relu"
    batchnorm: bool = False
    dropout: float = 0.0
    loss: str = "ce"
    optimizer: str = "sgd"
    schedule: str = "none"
    data: str = "mnist"  # or a generated set of common.presets.DATASETS: edges, student, sum

    def __post_init__(self):
        if self.lr is None and self.optimizer in DEFAULT_LR:
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if self.weight_decay is None and self.optimizer in DEFAULT_WEIGHT_DECAY:
            object.__setattr__(self, "weight_decay", DEFAULT_WEIGHT_DECAY[self.optimizer])

    @property
    def arch(self):
        """The layers as scratch.toolbox.model wires them; a sigmoid on the output for 'bce' only."""
        return scratch_model.Arch(self.activation, self.batchnorm, self.dropout, sigmoid_output=self.loss == "bce")

    @property
    def hyper(self):
        return {"momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self.weight_decay}


def check_config(config, n_train):
    """Refuse what the training programs refuse, before either twin runs (InputError)."""
    for dtype in config.dtypes:
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    for field_name, allowed in (("optimizer", OPTIMIZERS), ("loss", LOSSES), ("schedule", SCHEDULES)):
        if getattr(config, field_name) not in allowed:
            raise InputError(f"{field_name} must be one of {', '.join(allowed)}, "
                             f"got {getattr(config, field_name)!r}")
    config.arch  # noqa: B018  (Arch refuses an unknown activation or a dropout outside [0, 1))
    if not config.lr > 0 or config.momentum < 0 or config.weight_decay < 0:
        raise InputError(f"lr must be positive, momentum and weight decay >= 0, got "
                         f"{config.lr}, {config.momentum}, {config.weight_decay}")
    if config.optimizer != "sgd" and (config.momentum or config.nesterov):
        raise InputError(f"momentum and nesterov belong to sgd, not {config.optimizer}")
    if config.nesterov and not config.momentum > 0:
        raise InputError("nesterov needs momentum above 0")
    if config.batchnorm and (config.batch_size < 2 or n_train % config.batch_size == 1):
        raise InputError(f"batch norm in training mode needs batches of 2 or more: batch size "
                         f"{config.batch_size} on {n_train} images leaves a batch of 1; change "
                         f"--batch-size or --limit")


@dataclass
class Result:
    """Everything one dtype's run found. ok: every record within its tolerance."""

    dtype: str
    records: list
    drift: list = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)  # {"scratch": ..., "torch": ...} on the test set
    steps: int = 0
    seconds: float = 0.0
    losses: dict = field(default_factory=dict)  # {"scratch": (K,), "torch": (K,)}: every step's loss
    diverged: dict | None = None  # {"step", "scratch", "torch"}: where a loss or weight went inf or nan

    @property
    def ok(self):
        """Every record within tolerance; a diverged run has a failing "diverged" record."""
        return self.diverged is None and all(r.ok for r in self.records)


def batch_sequence(n, batch_size, steps, rng):
    """`steps` index arrays into n examples: a fresh permutation per epoch, the last batch of an
    epoch keeps the remainder (DataLoader's drop_last=False). Drawn once, fed to both twins."""
    batches = []
    while len(batches) < steps:
        order = rng.permutation(n)
        batches += [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:steps]


@contextmanager
def full_precision_one_thread():
    """float32 matmuls in full float32 (no TF32 on CUDA), and one BLAS thread on each side.

    One thread because the twins take turns every few microseconds: two thread pools (NumPy's
    OpenBLAS, torch's OpenMP) spinning against each other on a small machine made an epoch
    30x slower, and the numbers do not depend on it. threadpoolctl (a dev dependency) pins
    NumPy's BLAS when it is installed.
    """
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(), torch.get_num_threads())
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
        torch.set_num_threads(saved[3])


# ----------------------------------------------------------------------------- the data


def load_data(config):
    """((X, y), (X_test, y_test)), the training set cut to config.limit. MNIST in float32 with
    int64 labels; a generated set in float64 (each dtype's run rounds it once, as the programs
    do). Sets without a test set (student) are tested on their training set; the sum set, which
    draws fresh rows every epoch, trains on its first epoch's rows."""
    if config.data != "mnist":
        data = scratch_datasets.load(config.data, config.seed, np.float64, config.data_dir, config.limit)
        train = data.train if data.fresh is None else data.fresh(1)
        return train, data.test if data.test is not None else train
    X, y = load_mnist(config.data_dir, "train")
    X_test, y_test = load_mnist(config.data_dir, "test")
    if config.limit is not None:
        if config.limit > len(X):
            raise InputError(f"--limit {config.limit} exceeds the {len(X)} training images")
        X, y = X[:config.limit], y[:config.limit]
    return (X, y), (X_test, y_test)


# ----------------------------------------------------------------------------- one dtype


def twins(layer_sizes, dtype, rng, arch=scratch_model.Arch()):
    """(params, buffers, model): scratch params drawn from rng as nn.Linear draws them (batch
    norm's gamma 1, beta 0), its running statistics, and a torchimpl MLP holding a copy of
    both, with each nn.Dropout swapped for a GivenMask so that both twins use the same masks."""
    params = scratch_model.init_params(layer_sizes, rng, np.dtype(dtype), batchnorm=arch.batchnorm)
    buffers = scratch_model.init_buffers(params)
    model = MLP(list(layer_sizes), arch.activation, arch.batchnorm, arch.dropout,
                arch.sigmoid_output).to(getattr(torch, dtype))
    return params, buffers, with_given_masks(load_params_into(model, params, buffers))


def _eval_outputs(params, buffers, arch, model, X):
    """Both twins' evaluation-mode outputs on X, in batches of EVAL_BATCH: (ours, theirs), (N, C)."""
    chunks = [(scratch_eval(params, buffers, arch, X[i:i + EVAL_BATCH]), torch_eval(model, X[i:i + EVAL_BATCH]))
              for i in range(0, len(X), EVAL_BATCH)]
    return np.concatenate([a for a, _ in chunks]), torch.cat([b for _, b in chunks]).numpy()


def evaluate_both(params, model, X_test, y_test, dtype, arch=scratch_model.Arch(), buffers=None,
                  tolerance=None, task="classes"):
    """Both trained twins on the test set in evaluation mode: their outputs (within `tolerance`,
    default the dtype's SGD training tolerance), the predicted classes and the accuracies;
    returns (records, accuracy). A regression has outputs only; a binary task predicts
    output > 0.5 for probabilities, > 0 for logits."""
    tolerance = tolerances.TRAINING[dtype] if tolerance is None else tolerance
    ours, theirs = _eval_outputs(params, buffers, arch, model, X_test)  # N, C
    outputs = compare("test set", "outputs (eval mode)", ours, theirs, tolerance, dtype)
    if task == "regression":
        return [outputs], {}
    if task == "binary":
        cut = 0.5 if arch.sigmoid_output else 0.0
        ours, theirs, y_test = (ours > cut).ravel(), (theirs > cut).ravel(), (y_test > 0.5).ravel()
    else:
        ours, theirs = ours.argmax(axis=1), theirs.argmax(axis=1)
    accuracy = {"scratch": float((ours == y_test).mean()), "torch": float((theirs == y_test).mean())}
    differing = int((ours != theirs).sum())
    gap = abs(accuracy["scratch"] - accuracy["torch"])
    shape = (len(X_test),)
    return [
        outputs,
        Record("test set", "predictions differing", dtype, shape, differing, differing / len(X_test),
               tolerances.PREDICTIONS_DIFFERING[dtype], checked="max_abs_err"),
        Record("test set", "accuracy", dtype, (), gap, gap / max(accuracy["torch"], 1e-300),
               tolerances.TEST_ACCURACY[dtype], checked="max_abs_err",
               note=f"scratch {accuracy['scratch']:.4f}, torch {accuracy['torch']:.4f}"),
    ], accuracy


def _targets(y, dtype):
    """Class labels stay int64; float targets (binary, regression) take the run's dtype."""
    return y.astype(dtype) if np.issubdtype(y.dtype, np.floating) else y


def _guarded(check, dtype, checks):
    """checks() -> (records, extra); a twin that raises instead is one failing record, named
    after the check, with the error as its note, and extra None."""
    try:
        return checks()
    except InputError:  # a bad configuration is the user's to fix, not a parity failure
        raise
    except (ValueError, RuntimeError, IndexError) as err:  # a broken twin may not even run
        note = f"raised {type(err).__name__}: {err}"
        return [Record(check, "raised", dtype, (), float("inf"), float("inf"), 0.0, note=note)], None


def training_tolerances(config, dtype):
    """(tolerance, noise tolerance) over a run: SGD's, or Adam's looser pair (tolerances.py)."""
    if config.optimizer == "sgd":
        return tolerances.TRAINING[dtype], tolerances.TRAINING[dtype]
    return tolerances.ADAM_TRAINING[dtype], tolerances.NOISE_DRIVEN[dtype]


def run_dtype(config, train, test, dtype, start=None):
    """Every check of `config` in one dtype ('float64' or 'float32'); returns a Result.

    start(dtype, rng) -> (params, buffers, model) gives both twins their first weights; by
    default twins() draws them (parity/module.py starts from a reader's own module instead).
    """
    began = time.perf_counter()
    X, y = train[0].astype(dtype), _targets(train[1], dtype)
    X_test, y_test = test[0].astype(dtype), _targets(test[1], dtype)
    rng, arch = np.random.default_rng(config.seed), config.arch
    if start is None:
        params, buffers, model = twins(config.layer_sizes, dtype, rng, arch)
    else:
        params, buffers, model = start(dtype, rng)
    steps_per_epoch = math.ceil(len(X) / config.batch_size)
    steps = config.steps or steps_per_epoch
    batches = batch_sequence(len(X), config.batch_size, steps, rng)

    def draw(idx):  # each step's dropout masks, drawn once from rng and handed to both twins
        return draw_masks(rng, config.layer_sizes[1:-1], len(idx), arch.dropout, dtype)

    first = draw(batches[0])  # the one-batch check's masks, reused by the first training step
    check = training_check(steps, config.optimizer)
    training, noise = training_tolerances(config, dtype)
    with full_precision_one_thread():
        records, _ = _guarded("one batch", dtype, lambda: (compare_one_batch(
            params, model, X[batches[0]], y[batches[0]], tolerances.ONE_BATCH[dtype], arch=arch,
            buffers=buffers, masks=first, loss=config.loss), None))
        losses, diverged = {}, {}
        trained, drift = _guarded(check, dtype, lambda: compare_training(
            params, model, X, y, batches, config.lr, training, config.drift_every,
            arch=arch, buffers=buffers, masks=itertools.chain([first], map(draw, batches[1:])),
            loss=config.loss, optimizer=config.optimizer, schedule=config.schedule,
            steps_per_epoch=steps_per_epoch, noise_tolerance=noise, losses_out=losses, diverged_out=diverged,
            **config.hyper))
        records += trained
        accuracy = {}
        if drift is not None and not diverged:  # models that trained to finite weights can be evaluated
            test_records, accuracy = evaluate_both(params, model, X_test, y_test, dtype, arch, buffers,
                                                   training, task=DATASETS[config.data].task)
            records += test_records
    return Result(dtype, records, drift, accuracy, steps, time.perf_counter() - began, losses, diverged or None)


def run(config, data=None, on_result=None, start=None):
    """All of config.dtypes in order; data ((X, y), (X_test, y_test)) or None to read MNIST.

    on_result(result) is called as each dtype finishes, so a program can print as it goes;
    start, where given, makes both twins' first weights (see run_dtype).
    """
    scratch_model.check_layer_sizes(config.layer_sizes)
    train, test = load_data(config) if data is None else data
    check_config(config, len(train[0]))
    for X_, y_ in (train, test):
        if DATASETS[config.data].task == "classes":
            check_dataset(X_, y_, config.layer_sizes[0], config.layer_sizes[-1])
        else:
            check_targets(X_, y_, config.layer_sizes[0], config.layer_sizes[-1])
    results = []
    for dtype in config.dtypes:
        results.append(run_dtype(config, train, test, dtype, start))
        if on_result is not None:
            on_result(results[-1])
    return results

