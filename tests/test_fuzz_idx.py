"""A fuzzer for the IDX readers: a damaged or hostile file gives InputError and nothing else.

Hypothesis (derandomized in conftest.py, so every run draws the same files) builds small IDX
files, gzip'd or raw, and damages them: bytes flipped, cut short or appended, dimensions made
huge or zero, another magic number, data type or number of dimensions, the gzip stream flipped,
cut or followed by more, gzip bombs (a little gzip that inflates to 64 MiB). Each file goes
through read_idx and through the MNIST folder loader, of scratch alone and of both twins where
torch is installed. The tests assert that only InputError escapes; that a file which reads is
exactly what an independent check of the format says it holds; that memory (tracemalloc's peak)
stays a small multiple of what the file may hold; and that no file changes.
"""

import gzip
import hashlib
import math
import struct
import tracemalloc
import zlib
from functools import cache
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import common.idx
import scratch.data as sd
from common.errors import InputError
from common.idx import DEFAULT_DATA_DIR, FILES, IMAGE_MAGIC, LABEL_MAGIC

try:  # the torch twin, for the tests marked torch; scratch's run without it (conftest.py)
    import torch
    import torchimpl.data as td
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = td = None

# read_idx is called with this cap, so a header that declares more must be refused unread.
LIMIT = 1 << 16
BOMB = 64 << 20  # what a bomb inflates to: 1024 times LIMIT, 1.4 times MNIST's training images
# Memory a read may take beyond the bytes of the file and of its payload: gzip's read buffer
# (128 KiB), zlib's window and state (about 40 KiB), a buffered reader (8 KiB), small objects.
SLACK = 256 << 10
# 600 files for read_idx, 250 folders for the loader: the four tests take about 7 s on two busy
# cores (under tracemalloc, which slows every allocation).
FUZZ = settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@cache
def bomb_member():
    """A gzip member of BOMB zero bytes (about 64 KiB), made once, in pieces."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    piece = bytes(1 << 20)
    return b"".join([*(packer.compress(piece) for _ in range(BOMB >> 20)), packer.flush()])


# ----------------------------------------------------------------------------- the files


def header(magic, dims):
    return struct.pack(f">I{len(dims)}I", magic, *dims)


def flip(blob, at, mask):
    if blob:
        blob[at % len(blob)] ^= mask or 1


def set_dim(blob, i, value):
    if len(blob) >= 4:
        ndim = blob[3]
        start = 4 + 4 * (i % max(ndim, 1))
        if start + 4 <= len(blob):
            blob[start:start + 4] = struct.pack(">I", value)


# LIMIT - 8: a one-dimensional file of exactly LIMIT bytes, the most read_idx may read here
DIM_VALUES = st.one_of(st.sampled_from([0, 1, LIMIT - 8, LIMIT - 7, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))
# One damage to the raw IDX bytes: (what, arguments).
RAW_DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("header byte"), st.integers(0, 3), st.integers(0, 255)),  # magic, type, ndim
    st.tuples(st.just("dim"), st.integers(0, 3), DIM_VALUES),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=40)),
)
GZIP_DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("append"), st.sampled_from([b"\0" * 8, b"garbage", b"\x1f", gzip.compress(b"more")])),
    st.tuples(st.just("bomb")),  # another member follows: BOMB zero bytes
)


def damage(blob, how):
    blob = bytearray(blob)
    what, *args = how
    if what == "flip":
        flip(blob, *args)
    elif what == "header byte":
        if len(blob) > args[0]:
            blob[args[0]] = args[1]
    elif what == "dim":
        set_dim(blob, *args)
    elif what == "cut":
        del blob[args[0] % (len(blob) + 1):]
    elif what == "append":
        blob += args[0]
    return bytes(blob)


@st.composite
def idx_files(draw, magic=None, first=None, gzipped=st.booleans(), damaged=True):
    """(file bytes, gzip'd?, bombed?): an IDX file, of `magic`'s kind if given, damaged or not."""
    dims = [first or draw(st.integers(1, 12))] + draw(st.lists(st.integers(1, 12), max_size=2))
    if magic is not None:
        dims = [dims[0], 28, 28] if magic == IMAGE_MAGIC else dims[:1]
    payload = draw(st.binary(min_size=math.prod(dims), max_size=math.prod(dims)))
    raw = header(magic or 0x800 | len(dims), dims) + payload
    for how in draw(st.lists(RAW_DAMAGE, max_size=3 * damaged)):
        raw = damage(raw, how)
    if not draw(gzipped):
        return raw, False, False
    blob, hows = gzip.compress(raw, mtime=0), draw(st.lists(GZIP_DAMAGE, max_size=2 * damaged))
    for how in hows:
        blob = blob + bomb_member() if how == ("bomb",) else damage(blob, how)
    return blob, True, ("bomb",) in hows


def expected_array(blob, gz, bombed, limit, magic=None):
    """What a correct reader returns for these file bytes, found without common/idx.py: the
    uint8 array, or None where the file must be refused."""
    if bombed:
        return None  # BOMB zero bytes follow whatever the header declares, and BOMB > limit
    try:
        raw = gzip.decompress(blob) if gz else blob
    except (OSError, EOFError, zlib.error):
        return None
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or not 1 <= raw[3] <= 4:
        return None
    if magic is not None and struct.unpack(">I", raw[:4])[0] != magic:
        return None
    offset = 4 + 4 * raw[3]
    if len(raw) < offset:
        return None
    dims = struct.unpack(f">{raw[3]}I", raw[4:offset])
    if 0 in dims or len(raw) != offset + math.prod(dims) or len(raw) > limit:
        return None
    return np.frombuffer(raw, np.uint8, offset=offset).reshape(dims)


# ----------------------------------------------------------------------------- reading, measured


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module", autouse=True)
def shipped_files_unchanged():
    """The shipped MNIST files are the same (size, time of change) after the fuzzers as before."""
    def fingerprint():
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in DEFAULT_DATA_DIR.iterdir()}

    before = fingerprint()
    yield
    assert fingerprint() == before


def lay_out(folder, files):
    """Make `files` ({name: bytes}) the whole content of folder."""
    for old in folder.iterdir():
        old.unlink()
    for name, blob in files.items():
        (folder / name).write_bytes(blob)


def contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def measured(call):
    """(what call() returns, or the InputError it raises; tracemalloc's peak in bytes meanwhile).
    Any other exception escapes and fails the test."""
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    except InputError as err:
        return err, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def check_read_idx(twins, folder, blob, gz, bombed):
    """Each twin's read_idx on the file: the expected array or an InputError naming it, the same
    for both twins, in bounded memory, the file untouched. Returns the outcomes."""
    files = {"file.gz" if gz else "file.idx": blob}
    lay_out(folder, files)
    path = folder / next(iter(files))
    want = expected_array(blob, gz, bombed, LIMIT)
    outcomes = []
    for twin in twins:
        got, peak = measured(lambda: twin.read_idx(path, max_bytes=LIMIT))
        assert contents(folder) == files
        # the payload read (at most LIMIT + 1 bytes, growing: up to 2.25 times that during a
        # copy), the file's own bytes, and SLACK; a bomb needs BOMB, 1000 times LIMIT
        assert peak <= 3 * LIMIT + 2 * len(blob) + SLACK, (peak, twin.__name__)
        if want is None:
            assert isinstance(got, InputError) and str(path) in str(got), got
            outcomes.append(str(got))
        else:
            assert not isinstance(got, InputError), got
            assert str(got.dtype).endswith("uint8") and np.array_equal(np.asarray(got), want)
            outcomes.append(want)
    return outcomes


@FUZZ
@given(file=idx_files())
def test_read_idx_refuses_every_damaged_file_with_input_error_in_bounded_memory(folder, file):
    check_read_idx([sd], folder, *file)


@pytest.mark.torch
@FUZZ
@given(file=idx_files())
def test_both_twins_read_idx_alike_on_damaged_files(folder, file):
    scratch_outcome, torch_outcome = check_read_idx([sd, td], folder, *file)
    if isinstance(scratch_outcome, str):
        assert scratch_outcome == torch_outcome  # the same words: both come from common/idx.py


# ----------------------------------------------------------------------------- the MNIST loader

IMAGES, LABELS = FILES["test"]


@st.composite
def mnist_folders(draw):
    """(images file, labels file, listed?): a test split, damaged or not; listed files have
    their checksums added to the known ones, so what is in them reaches the IDX checks."""
    n, mostly = draw(st.integers(1, 4)), st.integers(0, 4).map(bool)  # mostly: True 4 times in 5
    damaged = draw(st.sampled_from(["images", "labels", "both", "neither"]))
    images = draw(idx_files(IMAGE_MAGIC, n, mostly, damaged in ("images", "both")))
    labels = draw(idx_files(LABEL_MAGIC, draw(st.sampled_from([n, n, n + 1])), mostly, damaged in ("labels", "both")))
    return images, labels, draw(mostly)


def check_load_mnist(loaders, folder, images, labels, listed):
    files = {IMAGES: images[0], LABELS: labels[0]}
    lay_out(folder, files)
    sums = {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()} if listed else {}
    caps = {name: common.idx.idx_size(common.idx.SHAPES[name]) for name in files}
    # each file is a gzip'd file by its name, whatever the fuzzer made of it
    X_want = expected_array(images[0], True, images[2], caps[IMAGES], IMAGE_MAGIC)
    y_want = expected_array(labels[0], True, labels[2], caps[LABELS], LABEL_MAGIC)
    valid = listed and X_want is not None and y_want is not None and len(X_want) == len(y_want)
    outcomes = []
    with mock.patch.dict(common.idx.SHA256, {"listed": sums}):
        for load in loaders:
            got, peak = measured(lambda: load(folder, "test"))
            assert contents(folder) == files
            # each file's bytes, and what it may inflate to (its known size, 7.8 MB for the
            # images, though a bomb holds 64 MiB), with the same factors as for read_idx
            assert peak <= 3 * (caps[IMAGES] + caps[LABELS]) + 2 * sum(map(len, files.values())) + SLACK
            if not valid:
                assert isinstance(got, InputError) and str(folder) in str(got), got
                outcomes.append(str(got))
                continue
            assert not isinstance(got, InputError), got
            X, y = map(np.asarray, got)
            assert np.array_equal(X, X_want.reshape(len(X_want), -1).astype(np.float32) / np.float32(255))
            assert np.array_equal(y, y_want.astype(np.int64))
            outcomes.append("loaded")
    return outcomes


@settings(FUZZ, max_examples=250)  # each folder is two files and a SHA-256 each
@given(split=mnist_folders())
def test_load_mnist_refuses_every_damaged_folder_with_input_error_in_bounded_memory(folder, split):
    check_load_mnist([sd.load_mnist], folder, *split)


@pytest.mark.torch
@settings(FUZZ, max_examples=250)
@given(split=mnist_folders())
def test_both_twins_load_mnist_alike_from_damaged_folders(folder, split):
    frombuffer = lambda data_dir, split: td.load_mnist(data_dir, split, use_torchvision=False)
    scratch_outcome, torch_outcome = check_load_mnist([sd.load_mnist, frombuffer], folder, *split)
    assert scratch_outcome == torch_outcome
