"""MNIST for the PyTorch twin: IDX files into tensors, dataset checks, a DataLoader.

Twin of scratch/data.py. Where torchvision imports, load_mnist reads the files through
torchvision.datasets.MNIST; otherwise through torch.frombuffer. Both give the same tensors,
and the same numbers as the NumPy twin (tests/test_data.py checks that). Try it:
    python -c "from torchimpl.data import load_mnist; X, y = load_mnist(); print(X.shape, y[:10])"
"""

import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from common.errors import InputError
from common.idx import FILES, IMAGE_MAGIC, LABEL_MAGIC, mnist_paths, parse_header, read_raw, read_verified

# N examples, D features (784 = 28 * 28 pixels), C classes

# ----------------------------------------------------------------------------- reading files


def _as_tensor(raw, path, magic=None):
    dims, offset = parse_header(raw, path, magic)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=offset).reshape(dims)


def read_idx(path):
    """Read an IDX file of unsigned bytes (gzip'd if its name ends in .gz) into a uint8 tensor."""
    return _as_tensor(read_raw(path), path)


def torchvision_datasets():
    """torchvision.datasets if torchvision imports with this torch build, else None."""
    try:
        from torchvision import datasets
    except Exception:  # not installed, or built for another torch ("torchvision::nms does not exist")
        return None
    return datasets


def load_mnist(data_dir=None, split="train", use_torchvision=None):
    """Return (X, y): X float32 (N, 784) with pixels scaled to [0, 1], y int64 (N,).

    Checksums are verified first. use_torchvision: None picks torchvision when it imports.
    """
    paths = mnist_paths(data_dir, split)
    raws = [read_verified(path) for path in paths]
    datasets = torchvision_datasets() if use_torchvision in (None, True) else None
    if use_torchvision and datasets is None:
        raise InputError("torchvision was asked for but does not import: pip install torchvision "
                         "built for this torch, or leave use_torchvision unset")
    if datasets is not None:
        images, labels = _load_with_torchvision(datasets, data_dir, split)
    else:
        images = _as_tensor(raws[0], paths[0], IMAGE_MAGIC)  # N, 28, 28
        labels = _as_tensor(raws[1], paths[1], LABEL_MAGIC)  # N
    if len(images) != len(labels):
        raise InputError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds "
                         f"{len(labels)} labels; the files do not belong together")
    X = images.reshape(len(images), -1).to(torch.float32) / 255  # N, D
    y = labels.to(torch.int64)  # N
    return X, y


def _load_with_torchvision(datasets, data_dir, split):
    """torchvision.datasets.MNIST wants the four files unzipped under ROOT/MNIST/raw/."""
    with tempfile.TemporaryDirectory() as root:
        raw_dir = Path(root) / "MNIST" / "raw"
        raw_dir.mkdir(parents=True)
        for name in FILES["train"] + FILES["test"]:
            path = Path(mnist_paths(data_dir, "train" if name.startswith("train") else "test")[0]).parent / name
            (raw_dir / name.removesuffix(".gz")).write_bytes(read_verified(path))
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
