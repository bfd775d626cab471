"""A parity run: a configuration, both twins built from the same weights, every check in one dtype.

`run(config)` is what `python -m parity` calls; parity/report.py prints its results. For each
dtype: one batch compared tensor by tensor, then K SGD steps on the same minibatch sequence,
then both trained models on the test set. Try it:
    python -c "from parity.run import Config, run; print(run(Config(steps=20))[0].ok)"
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from common.cli import N_CLASSES, N_FEATURES
from common.errors import InputError
from parity import tolerances
from parity.compare import Record, compare_one_batch, compare_training
from parity.convert import load_params_into
from scratch import model as scratch_model
from scratch.data import check_dataset, load_mnist
from torchimpl.model import MLP

DTYPES = ("float64", "float32")
EVAL_BATCH = 1000  # test-set evaluation batch; any size gives the same predictions

# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    """What defines a parity run. steps None: one epoch, ceil(N / batch_size) steps."""

    layer_sizes: tuple = (N_FEATURES, 128, 64, N_CLASSES)
    lr: float = 0.5
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    batch_size: int = 64
    seed: int = 0
    steps: int | None = None
    limit: int | None = None
    data_dir: str | None = None
    dtypes: tuple = DTYPES
    drift_every: int = 100


@dataclass
class Result:
    """Everything one dtype's run found. ok: every record within its tolerance."""

    dtype: str
    records: list
    drift: list = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)  # {"scratch": ..., "torch": ...} on the test set
    steps: int = 0
    seconds: float = 0.0

    @property
    def ok(self):
        return all(r.ok for r in self.records)


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
    """((X, y), (X_test, y_test)) as float32 / int64 arrays, the training set cut to config.limit."""
    X, y = load_mnist(config.data_dir, "train")
    X_test, y_test = load_mnist(config.data_dir, "test")
    if config.limit is not None:
        if config.limit > len(X):
            raise InputError(f"--limit {config.limit} exceeds the {len(X)} training images")
        X, y = X[:config.limit], y[:config.limit]
    return (X, y), (X_test, y_test)


# ----------------------------------------------------------------------------- one dtype


def twins(layer_sizes, dtype, rng):
    """scratch params drawn from rng as nn.Linear draws them, and a torch MLP holding a copy."""
    params = scratch_model.init_params(layer_sizes, rng, np.dtype(dtype))
    model = MLP(list(layer_sizes)).to(getattr(torch, dtype))
    return params, load_params_into(model, params)


def _predictions(params, model, X):
    with torch.no_grad():
        ours = np.concatenate([scratch_model.predict(params, X[i:i + EVAL_BATCH])
                               for i in range(0, len(X), EVAL_BATCH)])
        theirs = torch.cat([model(torch.from_numpy(X[i:i + EVAL_BATCH])).argmax(dim=1)
                            for i in range(0, len(X), EVAL_BATCH)]).numpy()
    return ours, theirs


def evaluate_both(params, model, X_test, y_test, dtype):
    """Predicted classes and accuracy of both trained twins; returns (records, accuracy)."""
    ours, theirs = _predictions(params, model, X_test)
    accuracy = {"scratch": float((ours == y_test).mean()), "torch": float((theirs == y_test).mean())}
    differing = int((ours != theirs).sum())
    gap = abs(accuracy["scratch"] - accuracy["torch"])
    shape = (len(X_test),)
    return [
        Record("test set", "predictions differing", dtype, shape, differing, differing / len(X_test),
               tolerances.PREDICTIONS_DIFFERING[dtype], checked="max_abs_err"),
        Record("test set", "accuracy", dtype, (), gap, gap / max(accuracy["torch"], 1e-300),
               tolerances.TEST_ACCURACY[dtype], checked="max_abs_err",
               note=f"scratch {accuracy['scratch']:.4f}, torch {accuracy['torch']:.4f}"),
    ], accuracy


def _guarded(check, dtype, compare):
    """compare() -> (records, extra); a twin that raises instead is one failing record, named
    after the check, with the error as its note, and extra None."""
    try:
        return compare()
    except InputError:  # a bad configuration is the user's to fix, not a parity failure
        raise
    except (ValueError, RuntimeError, IndexError) as err:  # a broken twin may not even run
        note = f"raised {type(err).__name__}: {err}"
        return [Record(check, "raised", dtype, (), float("inf"), float("inf"), 0.0, note=note)], None


def run_dtype(config, train, test, dtype):
    """Every check of `config` in one dtype ('float64' or 'float32'); returns a Result."""
    start = time.perf_counter()
    X, y = train[0].astype(dtype), train[1]
    X_test, y_test = test[0].astype(dtype), test[1]
    rng = np.random.default_rng(config.seed)
    params, model = twins(config.layer_sizes, dtype, rng)
    steps = config.steps or -(-len(X) // config.batch_size)
    batches = batch_sequence(len(X), config.batch_size, steps, rng)

    with full_precision_one_thread():
        records, _ = _guarded("one batch", dtype, lambda: (compare_one_batch(
            params, model, X[batches[0]], y[batches[0]], tolerances.ONE_BATCH[dtype]), None))
        trained, drift = _guarded(f"{steps} SGD steps", dtype, lambda: compare_training(
            params, model, X, y, batches, config.lr, tolerances.TRAINING[dtype], config.drift_every,
            momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov))
        records += trained
        accuracy = {}
        if drift is not None:  # models that trained can be evaluated
            test_records, accuracy = evaluate_both(params, model, X_test, y_test, dtype)
            records += test_records
    return Result(dtype, records, drift, accuracy, steps, time.perf_counter() - start)


def run(config, data=None, on_result=None):
    """All of config.dtypes in order; data ((X, y), (X_test, y_test)) or None to read MNIST.

    on_result(result) is called as each dtype finishes, so a program can print as it goes.
    """
    for dtype in config.dtypes:
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    scratch_model.check_layer_sizes(config.layer_sizes)
    train, test = load_data(config) if data is None else data
    for X_, y_ in (train, test):
        check_dataset(X_, y_, config.layer_sizes[0], config.layer_sizes[-1])
    results = []
    for dtype in config.dtypes:
        results.append(run_dtype(config, train, test, dtype))
        if on_result is not None:
            on_result(results[-1])
    return results

