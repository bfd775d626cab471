"""Every data set the PyTorch twin trains on, as tensors: MNIST, and the chapters' generated sets.

Twin: scratch/extras/datasets.py gives the same numbers as arrays. MNIST comes from torchimpl/data.py;
edges, student and sum come from common/synthetic.py as Python floats, turned into tensors here
(float64 first, then the run's dtype, rounding exactly as NumPy does). Try it:
    python -c "from torchimpl.extras.datasets import load; print(load('edges', 0).train[0].shape)"
"""

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from common import synthetic
from common.errors import InputError
from common.presets import DATASETS, PRESETS
from torchimpl.data import load_mnist

# ----------------------------------------------------------------------------- a run's data


@dataclass
class Data:
    """train and test are (X, y) pairs (test may be None: the student set has no test set);
    fresh(epoch), where given, returns that epoch's own training rows (the sum set)."""

    train: tuple
    test: tuple | None
    fresh: Callable | None = None


def load(name, seed, dtype=torch.float32, data_dir=None, limit=None):
    """The data set `name` (a key of common.presets.DATASETS) in `dtype`.

    Labels: int64 class indices for mnist and edges (edges' one-hot labels through argmax, as
    the chapter converts them); float targets shaped (N, 1) for student and sum.
    """
    f64 = torch.float64
    if name == "mnist":
        train, test = load_mnist(data_dir, "train"), load_mnist(data_dir, "test")
    elif name == "edges":
        X, Y, X_test, Y_test = synthetic.edges(seed)
        train = torch.tensor(X, dtype=f64), torch.tensor(Y, dtype=f64).argmax(dim=1)  # N, 25 and N
        test = torch.tensor(X_test, dtype=f64), torch.tensor(Y_test, dtype=f64).argmax(dim=1)
    elif name == "student":
        X, y = synthetic.students()
        train, test = (torch.tensor(X, dtype=f64), torch.tensor(y, dtype=f64)), None  # 4, 2 and 4, 1
    elif name == "sum":
        rows = DATASETS["sum"]

        @functools.lru_cache(maxsize=1)  # fit checks epoch 1 before training on it
        def fresh(epoch):
            X, y = synthetic.sum_rows(seed, epoch, rows.fresh_rows)
            return _cast((torch.tensor(X, dtype=f64), torch.tensor(y, dtype=f64)), dtype)

        X, y = synthetic.sum_rows(seed, "test", rows.test_rows)
        return Data(None, _cast((torch.tensor(X, dtype=f64), torch.tensor(y, dtype=f64)), dtype), fresh)
    else:
        raise InputError(f"unknown data set {name!r}: use one of {', '.join(DATASETS)}")
    if limit is not None:
        if limit > len(train[0]):
            raise InputError(f"--limit {limit} exceeds the {len(train[0])} training {DATASETS[name].noun}")
        train = train[0][:limit], train[1][:limit]
    return Data(_cast(train, dtype), _cast(test, dtype) if test is not None else None)


def _cast(pair, dtype):
    """Inputs to the run's dtype; float targets too (integer labels stay int64)."""
    X, y = pair
    return X.to(dtype), (y.to(dtype) if y.is_floating_point() else y.to(torch.int64))


def probe_inputs(preset, dtype=torch.float32):
    """The preset's probe rows as a tensor, or None when the preset has no probe."""
    probe = PRESETS[preset].probe if preset else None
    return None if probe is None else torch.tensor(probe.inputs, dtype=torch.float64).to(dtype)
