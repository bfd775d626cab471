"""MNIST for the NumPy twin: IDX files into arrays, and dataset checks.

Twin of torchimpl/data.py, which reads the same files with torch.frombuffer (or torchvision).
The minibatches are the core's (scratch/mlp.py: iterate_minibatches). Try it:
    python -c "from scratch.data import load_mnist; X, y = load_mnist(); print(X.shape, y[:10])"
"""

import numpy as np

from common.errors import InputError
from common.idx import IMAGE_MAGIC, LABEL_MAGIC, MAX_IDX_BYTES, mnist_paths, parse_header, read_raw, read_verified

# N examples, D features (784 = 28 * 28 pixels), C classes

# ----------------------------------------------------------------------------- reading files


def _as_array(raw, path, magic=None):
    dims, offset = parse_header(raw, path, magic)
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def read_idx(path, *, max_bytes=MAX_IDX_BYTES):
    """Read an IDX file of unsigned bytes (gzip'd if its name ends in .gz) into a uint8 array.

    A damaged file raises InputError (common/idx.py reads it); so does one declaring more than
    max_bytes (header included), before that much is read."""
    return _as_array(read_raw(path, max_bytes), path)


def load_mnist(data_dir=None, split="train"):
    """Return (X, y): X float32 (N, 784) with pixels scaled to [0, 1], y int64 (N,).

    Each file is read once and its SHA-256 checked (MNIST or Fashion-MNIST), both before either
    IDX header, as in the torch twin, so a folder with two bad files gets the same first error.
    """
    paths = mnist_paths(data_dir, split)
    raws = [read_verified(path) for path in paths]
    images = _as_array(raws[0], paths[0], IMAGE_MAGIC)  # N, 28, 28
    labels = _as_array(raws[1], paths[1], LABEL_MAGIC)  # N
    if len(images) != len(labels):
        raise InputError(f"{paths[0]} holds {len(images)} images but {paths[1]} holds "
                         f"{len(labels)} labels; the files do not belong together")
    X = images.reshape(len(images), -1).astype(np.float32) / np.float32(255)  # N, D
    y = labels.astype(np.int64)  # N
    return X, y


# ----------------------------------------------------------------------------- checking data


def check_dataset(X, y, n_features, n_classes):
    """Raise InputError unless X is (N, n_features) finite floats, y (N,) ints in [0, n_classes)."""
    if X.ndim != 2:
        raise InputError(f"inputs must be a 2-d array (examples, features), got shape {X.shape}")
    if len(X) == 0:
        raise InputError("the dataset is empty: there is nothing to train or evaluate on")
    if X.shape[1] != n_features:
        raise InputError(f"inputs have {X.shape[1]} features but the first layer expects "
                         f"{n_features}: reshape the data or change the layer sizes")
    if not np.issubdtype(X.dtype, np.floating):
        raise InputError(f"inputs must be floating point, got {X.dtype}: scale them, e.g. X / 255")
    if not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise InputError(f"inputs contain NaN or inf (first in row {row}): clean the data first")
    if y.shape != (len(X),):
        raise InputError(f"labels must have shape ({len(X)},) to match the inputs, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got {y.dtype}: "
                         f"convert with y.astype(np.int64)")
    if y.min() < 0 or y.max() >= n_classes:
        bad = int(y.min() if y.min() < 0 else y.max())
        raise InputError(f"labels must lie in [0, {n_classes}), found {bad}")
