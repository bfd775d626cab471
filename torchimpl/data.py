"""MNIST for the PyTorch twin: IDX files into tensors, dataset checks, a DataLoader.

Twin of scratch/data.py. Where torchvision imports, load_mnist reads the files through
torchvision.datasets.MNIST; otherwise through torch.frombuffer. Both give the same tensors,
and the same numbers as the NumPy twin (tests/test_data.py and tests/test_torchvision.py check
that). A torchvision that is installed but does not import (built for another torch: "operator
torchvision::nms does not exist") is said once on stderr; asked for, it is an error. Try it:
    python -c "from torchimpl.data import load_mnist; X, y = load_mnist(); print(X.shape, y[:10])"
"""

import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from common.errors import InputError, first_line
from common.idx import FILES, IMAGE_MAGIC, LABEL_MAGIC, MAX_IDX_BYTES, mnist_paths, parse_header, read_raw, read_verified

# N examples, D features (784 = 28 * 28 pixels), C classes

# Which reader load_mnist used last, for a run header: "torchvision.datasets.MNIST (torchvision
# 0.29.1)" or "torch.frombuffer (...why not torchvision...)"; None before the first call.
last_reader = None

# ----------------------------------------------------------------------------- reading files


def _as_tensor(raw, path, magic=None):
    dims, offset = parse_header(raw, path, magic)  # no dimension is zero, so the buffer is never empty
    writable = raw if isinstance(raw, bytearray) else bytearray(raw)  # torch warns on a read-only buffer
    return torch.frombuffer(writable, dtype=torch.uint8, offset=offset).reshape(dims)


def read_idx(path, *, max_bytes=MAX_IDX_BYTES):
    """Read an IDX file of unsigned bytes (gzip'd if its name ends in .gz) into a uint8 tensor.

    A damaged file raises InputError (common/idx.py reads it); so does one declaring more than
    max_bytes (header included), before that much is read."""
    return _as_tensor(read_raw(path, max_bytes), path)


# (torchvision.datasets or None, the import error or None): tried once per process, since a
# failed `import torchvision` leaves half its modules behind and a second try is no better.
_torchvision = None
_fallback_said = False


def _import_torchvision():
    global _torchvision
    if _torchvision is None:
        try:
            from torchvision import datasets
        except Exception as err:  # not installed, or built for another torch
            _torchvision = None, err
        else:
            _torchvision = datasets, None
    return _torchvision


def _first_line(err):
    return f"{type(err).__name__}: {first_line(err)}" if str(err).strip() else type(err).__name__


def _not_installed(err):
    return isinstance(err, ModuleNotFoundError) and err.name == "torchvision"


def torchvision_datasets():
    """torchvision.datasets if torchvision imports with this torch build, else None."""
    return _import_torchvision()[0]


def _pick_reader(use_torchvision):
    """torchvision.datasets, or None for torch.frombuffer. Says once on stderr why an installed
    torchvision is passed over; raises InputError (from the import error) if it was asked for."""
    global last_reader, _fallback_said
    if use_torchvision is not None and not use_torchvision:
        last_reader = "torch.frombuffer (use_torchvision=False)"
        return None
    datasets, err = _import_torchvision()
    if datasets is not None:
        version = sys.modules["torchvision"].__version__
        last_reader = f"torchvision.datasets.MNIST (torchvision {version})"
        return datasets
    why = _first_line(err)
    last_reader = f"torch.frombuffer (torchvision does not import: {why})"
    if use_torchvision:
        raise InputError(f"torchvision was asked for but does not import ({why}): install the "
                         f"torchvision built for torch {torch.__version__}, or leave "
                         f"use_torchvision unset") from err
    if not _not_installed(err) and not _fallback_said:  # torchvision is optional: absent, say nothing
        _fallback_said = True
        print(f"torchimpl.data: torchvision is installed but does not import ({why}); reading "
              f"MNIST with torch.frombuffer instead (install the torchvision built for torch "
              f"{torch.__version__} to use it)", file=sys.stderr, flush=True)
    return None


def load_mnist(data_dir=None, split="train", use_torchvision=None):
    """Return (X, y): X float32 (N, 784) with pixels scaled to [0, 1], y int64 (N,).

    Each file is read once and its checksum verified. use_torchvision: None picks torchvision
    when it imports, True insists on it (InputError if it does not import), False never uses it.
    """
    paths = mnist_paths(data_dir, split)
    datasets = _pick_reader(use_torchvision)
    raws = [read_verified(path) for path in paths]
    if datasets is not None:
        images, labels = _load_with_torchvision(datasets, raws, split)
    else:
        images = _as_tensor(raws[0], paths[0], IMAGE_MAGIC)  # N, 28, 28
        labels = _as_tensor(raws[1], paths[1], LABEL_MAGIC)  # N
    if len(images) != len(labels):
        raise InputError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds "
                         f"{len(labels)} labels; the files do not belong together")
    X = images.reshape(len(images), -1).to(torch.float32) / 255  # N, D
    y = labels.to(torch.int64)  # N
    return X, y


def _load_with_torchvision(datasets, raws, split):
    """torchvision.datasets.MNIST reads ROOT/MNIST/raw/, unzipped. The split's two files go there
    from the bytes already verified; the other split's two are left empty: MNIST checks only that
    all four exist and reads the two of its split, so a folder holding one split works."""
    with tempfile.TemporaryDirectory() as root:
        raw_dir = Path(root) / "MNIST" / "raw"
        raw_dir.mkdir(parents=True)
        for name in FILES["train"] + FILES["test"]:
            (raw_dir / name.removesuffix(".gz")).touch()
        for name, raw in zip(FILES[split], raws):
            (raw_dir / name.removesuffix(".gz")).write_bytes(raw)
        ds = datasets.MNIST(root, train=(split == "train"), download=False)
        return ds.data.clone(), ds.targets.clone()


# ----------------------------------------------------------------------------- checking data


def check_dataset(X, y, n_features, n_classes):
    """Raise InputError unless X is (N, n_features) finite floats, y (N,) ints in [0, n_classes)."""
    if X.ndim != 2:
        raise InputError(f"inputs must be a 2-d array (examples, features), got shape {tuple(X.shape)}")
    if len(X) == 0:
        raise InputError("the dataset is empty: there is nothing to train or evaluate on")
    if X.shape[1] != n_features:
        raise InputError(f"inputs have {X.shape[1]} features but the first layer expects "
                         f"{n_features}: reshape the data or change the layer sizes")
    if not X.is_floating_point():
        raise InputError(f"inputs must be floating point, got {X.dtype}: scale them, e.g. X / 255")
    if not torch.isfinite(X).all():
        row = int(torch.nonzero(~torch.isfinite(X))[0, 0])
        raise InputError(f"inputs contain NaN or inf (first in row {row}): clean the data first")
    if tuple(y.shape) != (len(X),):
        raise InputError(f"labels must have shape ({len(X)},) to match the inputs, got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputError(f"labels must be integer class indices, got {y.dtype}: "
                         f"convert with y.long()")
    if y.min() < 0 or y.max() >= n_classes:
        bad = int(y.min() if y.min() < 0 else y.max())
        raise InputError(f"labels must lie in [0, {n_classes}), found {bad}")


# ----------------------------------------------------------------------------- minibatches


def make_loader(X, y, batch_size, generator=None):
    """DataLoader over a TensorDataset, shuffled by `generator` when given, the last batch kept."""
    if batch_size <= 0:
        raise InputError(f"batch size must be positive, got {batch_size}")
    return DataLoader(TensorDataset(X, y), batch_size=batch_size,
                      shuffle=generator is not None, generator=generator)
