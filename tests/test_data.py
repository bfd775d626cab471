"""The MNIST loaders of both twins: real files, identical arrays, minibatches, bad files."""

import collections
import functools
import gzip
import os
import shutil
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch.data as sd
import scratch.train
from scratch import mlp
from common.errors import InputError
from common.idx import DEFAULT_DATA_DIR, FILES, IMAGE_MAGIC, LABEL_MAGIC

try:  # the torch twin, for the tests and cases marked torch; scratch's run without it (conftest.py)
    import torch
    import torchimpl.data as td
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = td = None

# ----------------------------------------------------------------------------- the real files


@pytest.fixture(scope="module")
def scratch_train():
    return sd.load_mnist(None, "train")


def test_load_mnist_gives_float32_pixels_in_unit_range_and_int64_labels(scratch_train):
    X, y = scratch_train
    assert X.shape == (60000, 784) and X.dtype == np.float32
    assert y.shape == (60000,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    X_test, y_test = sd.load_mnist(None, "test")
    assert X_test.shape == (10000, 784) and y_test.shape == (10000,)


def test_training_label_counts_match_the_published_ones(scratch_train):
    _, y = scratch_train
    counts = np.bincount(y, minlength=10)
    assert counts[0] == 5923 and counts[1] == 6742
    assert counts.sum() == 60000


def test_training_pixel_mean_is_the_well_known_0_1307(scratch_train):
    X, _ = scratch_train
    # The mean every MNIST normalisation quotes is 0.1307 (0.13066 to five places).
    assert abs(X.mean(dtype=np.float64) - 0.1307) < 5e-5


@pytest.mark.torch
@pytest.mark.parametrize("split", ["train", "test"])
def test_both_twins_load_identical_arrays(split):
    X, y = sd.load_mnist(None, split)
    Xt, yt = td.load_mnist(None, split, use_torchvision=False)
    assert Xt.dtype == torch.float32 and yt.dtype == torch.int64
    assert np.array_equal(X, Xt.numpy()) and np.array_equal(y, yt.numpy())


# The torchvision reader is tested in tests/test_torchvision.py, where torchvision imports.


@pytest.mark.parametrize("twin", [sd, pytest.param(td, marks=pytest.mark.torch)], ids=["scratch", "torchimpl"])
def test_read_idx_returns_the_header_dimensions_as_uint8(twin):
    images = twin.read_idx(DEFAULT_DATA_DIR / FILES["test"][0])
    labels = twin.read_idx(DEFAULT_DATA_DIR / FILES["test"][1])
    assert tuple(images.shape) == (10000, 28, 28) and tuple(labels.shape) == (10000,)
    assert str(images.dtype).endswith("uint8") and int(labels[0]) == 7  # the first test digit is a 7


# ----------------------------------------------------------------------------- one split, each file once

READERS = pytest.mark.parametrize("load", [
    sd.load_mnist,
    pytest.param(functools.partial(td.load_mnist, use_torchvision=False) if td else None, marks=pytest.mark.torch),
], ids=["scratch", "torchimpl-frombuffer"])


@pytest.fixture
def reads(monkeypatch):
    """How many times each MNIST file is opened to be read (os.open, which common/idx.py
    open_regular uses), by file name."""
    counts, real = collections.Counter(), os.open

    def counting(path, *args, **kwargs):
        name = os.path.basename(os.fspath(path))
        if name in FILES["train"] + FILES["test"]:
            counts[name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting)
    return counts


@READERS
def test_a_folder_holding_only_the_test_files_loads_the_test_split(load, tmp_path):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    X, y = load(tmp_path, "test")
    X_all, y_all = load(None, "test")
    assert np.array_equal(np.asarray(X), np.asarray(X_all)) and np.array_equal(np.asarray(y), np.asarray(y_all))
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz is missing"):
        load(tmp_path, "train")


@READERS
@pytest.mark.parametrize("split", ["train", "test"])
def test_each_file_of_the_split_is_read_once_and_the_other_split_never(load, split, reads):
    load(None, split)
    assert reads == {name: 1 for name in FILES[split]}


# ----------------------------------------------------------------------------- minibatches


@settings(max_examples=60)
@given(n=st.integers(1, 300), batch_size=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_minibatches_cover_every_example_exactly_once(n, batch_size, seed):
    X, y = np.arange(n, dtype=np.float32)[:, None], np.arange(n)
    batches = list(mlp.iterate_minibatches(X, y, batch_size, np.random.default_rng(seed)))
    seen = np.concatenate([yb for _, yb in batches])
    assert np.array_equal(np.sort(seen), y)
    assert [len(yb) for _, yb in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches[-1][1]) == (n % batch_size or batch_size)  # the partial batch is kept
    assert all(np.array_equal(xb[:, 0], yb) for xb, yb in batches)  # rows stay paired


def test_minibatches_are_shuffled_reproducibly_and_differently_each_epoch():
    X, y = np.zeros((100, 1), np.float32), np.arange(100)
    order = lambda rng: np.concatenate([yb for _, yb in mlp.iterate_minibatches(X, y, 10, rng)])
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    first, again = order(rng_a), order(rng_b)
    assert np.array_equal(first, again) and not np.array_equal(first, y)
    assert not np.array_equal(order(rng_a), first)  # the next epoch draws a new permutation


@pytest.mark.torch
def test_loader_keeps_the_last_partial_batch():
    X, y = torch.zeros(130, 784), torch.zeros(130, dtype=torch.int64)
    sizes = [len(yb) for _, yb in td.make_loader(X, y, 64, torch.Generator().manual_seed(0))]
    assert sizes == [64, 64, 2]


@pytest.mark.torch
@pytest.mark.parametrize("bad", [0, -3])
def test_batch_size_must_be_positive(bad):
    X, y = np.zeros((4, 784), np.float32), np.zeros(4, np.int64)
    with pytest.raises(InputError, match="batch size must be positive"):
        scratch.train.fit(None, None, (X, y), None, 1, bad, np.random.default_rng(0))
    with pytest.raises(InputError, match="batch size must be positive"):
        td.make_loader(torch.from_numpy(X), torch.from_numpy(y), bad)


# ----------------------------------------------------------------------------- bad files

TWINS = pytest.mark.parametrize("twin", [sd, pytest.param(td, marks=pytest.mark.torch)], ids=["scratch", "torchimpl"])


@TWINS
def test_missing_data_directory_says_where_it_looked_and_how_to_get_the_files(twin, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match="nowhere does not exist") as err:
        twin.load_mnist(missing, "train")
    assert "data/mnist" in str(err.value) and "--data-dir" in str(err.value)


@TWINS
def test_missing_data_file_is_named(twin, tmp_path):
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz is missing"):
        twin.load_mnist(tmp_path, "train")


@TWINS
def test_a_changed_byte_fails_the_checksum(twin, tmp_path):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    damaged = tmp_path / FILES["test"][1]
    blob = bytearray(damaged.read_bytes())
    blob[-1] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    with pytest.raises(InputError, match="checksum mismatch for .*t10k-labels"):
        twin.load_mnist(tmp_path, "test")


def _write_idx(path, magic, dims, payload_len):
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    path.write_bytes(gzip.compress(header + bytes(payload_len)))
    return path


@TWINS
def test_a_truncated_file_is_reported(twin, tmp_path):
    path = _write_idx(tmp_path / "cut.gz", IMAGE_MAGIC, (10, 28, 28), 10 * 784 - 100)
    with pytest.raises(InputError, match="truncated or its count is wrong"):
        twin.read_idx(path)
    path.write_bytes(gzip.compress(b"\x00\x00\x08"))
    with pytest.raises(InputError, match="truncated"):
        twin.read_idx(path)


@TWINS
def test_a_wrong_magic_number_is_reported(twin, tmp_path):
    path = _write_idx(tmp_path / "magic.gz", 0x12345678, (10,), 10)
    with pytest.raises(InputError, match="magic number 0x12345678"):
        twin.read_idx(path)


@TWINS
def test_a_wrong_count_is_reported(twin, tmp_path):
    path = _write_idx(tmp_path / "count.gz", LABEL_MAGIC, (12,), 10)
    with pytest.raises(InputError, match="header says 12 = 12 bytes of data but the file holds 10"):
        twin.read_idx(path)


@TWINS
def test_a_file_that_is_not_gzip_is_reported(twin, tmp_path):
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match="not a readable gzip file"):
        twin.read_idx(path)
