"""The data readers against damaged and hostile files: one InputError naming the file, never a
traceback, a hang or unbounded memory (common/idx.py, used by scratch/data.py and
torchimpl/data.py). tests/test_fuzz_idx.py draws such files at random; these are the classes of
damage one by one, each through both twins' read_idx and, where it applies, the MNIST loader."""

import gzip
import os
import shutil
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

import common.idx
import scratch.data as sd
from common.errors import InputError, run_cli
from common.idx import DEFAULT_DATA_DIR, FILES, MAX_IDX_BYTES, max_gzip_size

try:  # the torch twin, for the cases marked torch; scratch's run without it (conftest.py)
    import torch
    import torchimpl.data as td
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = td = None

TWINS = pytest.mark.parametrize("twin", [sd, pytest.param(td, marks=pytest.mark.torch)], ids=["scratch", "torchimpl"])
IMAGES, LABELS = FILES["test"]
MiB = 1 << 20


def idx(dims, payload=None, magic=None):
    """The bytes of an IDX file of unsigned bytes, its payload zeros unless given."""
    head = struct.pack(f">I{len(dims)}I", 0x800 | len(dims) if magic is None else magic, *dims)
    return head + (bytes(int(np.prod(dims))) if payload is None else payload)


def write(path, blob):
    path.write_bytes(blob)
    return path


def refused(read, path, match):
    """read(path) raises InputError matching `match` and naming the file; returns the message."""
    with pytest.raises(InputError, match=match) as err:
        read(path)
    assert str(path) in str(err.value)
    return str(err.value)


def peak_bytes(call):
    """tracemalloc's peak while call() runs (its InputError, if any, is swallowed)."""
    tracemalloc.start()
    try:
        call()
    except InputError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_shared_checks_give_the_two_twins_the_same_words(tmp_path):
    """The checks live in common/idx.py, so both twins refuse a file in the same words: the
    scratch side alone checks here that the message comes from there (tests below compare)."""
    path = write(tmp_path / "zero.gz", gzip.compress(idx((0, 28))))
    assert "a dimension of zero" in refused(sd.read_idx, path, "header says 0 x 28")


@pytest.mark.torch
@pytest.mark.parametrize("blob", [gzip.compress(idx((0, 28))), gzip.compress(idx((3,), bytes(12), 0x0D01)),
                                  b"\x1f\x8b\x08\x00" + bytes(20), gzip.compress(idx((4,)))[:-3]],
                         ids=["zero dimension", "float data", "bad deflate", "cut short"])
def test_both_twins_refuse_a_bad_file_in_identical_words(tmp_path, blob):
    path = write(tmp_path / "bad.gz", blob)
    assert refused(sd.read_idx, path, None) == refused(td.read_idx, path, None)


# ----------------------------------------------------------------------------- damaged gzip

GOOD = gzip.compress(idx((3, 4), bytes(range(12))), mtime=0)


@TWINS
@pytest.mark.parametrize("blob, match", [
    (GOOD[:10] + b"\xff" * 20 + GOOD[30:], "not a readable gzip file .*(invalid|incorrect)"),  # zlib.error
    (GOOD[:-8] + bytes(4) + GOOD[-4:], r"not a readable gzip file \(CRC check failed"),  # BadGzipFile
    (GOOD[:-3], "not a readable gzip file .*ended before"),  # EOFError: cut short
    (b"\x1f\x8b\x08\x08" + bytes(6) + b"name without its end", "not a readable gzip file"),
    (GOOD + b"garbage", r"not a readable gzip file \(Not a gzipped file"),
    (b"", "truncated: 0 bytes"),
], ids=["bad deflate data", "bad crc", "cut short", "cut in the header", "garbage after", "empty"])
def test_a_damaged_gzip_stream_is_an_input_error(twin, tmp_path, blob, match):
    refused(twin.read_idx, write(tmp_path / "damaged.gz", blob), match)


@TWINS
def test_a_gzip_file_named_without_gz_is_told_to_be_renamed(twin, tmp_path):
    refused(twin.read_idx, write(tmp_path / "images.idx", GOOD), "gzip'd but its name does not end in .gz")


# ----------------------------------------------------------------------------- bad headers


@TWINS
@pytest.mark.parametrize("suffix", [".gz", ".idx"])
@pytest.mark.parametrize("blob, match", [
    (idx((0, 28)), "header says 0 x 28, a dimension of zero"),
    (idx((5, 0, 3)), "header says 5 x 0 x 3, a dimension of zero"),
    (idx((3,), bytes(12), 0x0D01), r"holds float32 data \(IDX type 0x0d\); these readers take unsigned bytes"),
    (idx((3,), bytes(3), 0x0701), "magic number 0x00000701, not an IDX file"),
    (idx((3,), bytes(3), 0x01000801), "magic number 0x01000801, not an IDX file"),
    (struct.pack(">I", 0x800), "declares 0 dimensions"),
    (idx((1, 1, 1, 1, 1)), "declares 5 dimensions"),
    (struct.pack(">I3I", 0x803, 2**32 - 1, 2**32 - 1, 2**32 - 1), f"more than the {MAX_IDX_BYTES} an IDX file may hold"),
    (idx((3, 4)) + b"x", "header says 3 x 4 = 12 bytes of data but the file holds (13|more)"),
    (idx((3, 4))[:-1], "header says 3 x 4 = 12 bytes of data but the file holds 11"),
    (idx((3, 4))[:9], r"truncated inside its header \(9 of 12 bytes\)"),
], ids=["zero first", "zero middle", "float type", "bad type", "bad high byte", "ndim 0", "ndim 5",
        "dims overflow", "trailing byte", "one byte short", "cut header"])
def test_a_bad_header_or_length_is_an_input_error(twin, tmp_path, suffix, blob, match):
    path = write(tmp_path / f"bad{suffix}", gzip.compress(blob) if suffix == ".gz" else blob)
    refused(twin.read_idx, path, match)


@TWINS
def test_max_bytes_counts_the_header_and_refuses_one_byte_more(twin, tmp_path):
    path = write(tmp_path / "ten.gz", gzip.compress(idx((10,), bytes(range(10)))))  # 18 bytes in all
    assert np.array_equal(np.asarray(twin.read_idx(path, max_bytes=18)), np.arange(10))
    refused(lambda p: twin.read_idx(p, max_bytes=17), path, "more than the 17 an IDX file may hold")


# ----------------------------------------------------------------------------- bounded memory


@TWINS
def test_a_header_declaring_more_than_max_idx_bytes_is_refused_before_anything_is_allocated(twin, tmp_path):
    path = write(tmp_path / "huge.gz", gzip.compress(idx((2**16, 2**15 + 1), b"")))  # 2 GiB + 64 KiB
    assert peak_bytes(lambda: refused(twin.read_idx, path, "more than the 2147483648")) < MiB


@TWINS
def test_memory_follows_what_a_gzip_file_holds_not_what_its_header_claims(twin, tmp_path):
    path = write(tmp_path / "claims.gz", gzip.compress(idx((1024, 1024, 1024), bytes(MiB))))  # 1 GiB claimed
    assert peak_bytes(lambda: refused(twin.read_idx, path, "holds 1048576; the file is truncated")) < 8 * MiB


@TWINS
def test_a_gzip_bomb_is_read_no_further_than_its_header_declares(twin, tmp_path):
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 64 MiB of zeros in about 64 KiB
    bomb = packer.compress(idx((10,))) + b"".join(packer.compress(bytes(MiB)) for _ in range(64)) + packer.flush()
    path = write(tmp_path / "bomb.gz", bomb)
    assert len(bomb) < MiB
    assert peak_bytes(lambda: refused(twin.read_idx, path, "10 bytes of data but the file holds more")) < 2 * MiB


@TWINS
def test_a_raw_file_whose_size_disagrees_with_its_header_is_refused_unread(twin, tmp_path):
    path = write(tmp_path / "sparse.idx", idx((1024, 1024, 1024), b""))
    os.truncate(path, 16 << 30)  # 16 GiB on paper, no disk: a sparse file
    assert peak_bytes(lambda: refused(twin.read_idx, path, "holds 17179869168; the file is truncated")) < MiB


@TWINS
def test_an_mnist_file_larger_than_the_original_can_be_is_refused_from_its_size(twin, tmp_path):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    huge = tmp_path / IMAGES
    os.truncate(huge, 3 << 30)  # 3 GiB, sparse: read whole, it would be 3 GiB of memory
    peak = peak_bytes(lambda: refused(lambda _: twin.load_mnist(tmp_path, "test"), huge,
                                      f"is 3221225472 bytes, more than {IMAGES} of MNIST or Fashion-MNIST can be"))
    assert peak < MiB and max_gzip_size(IMAGES) < 8 * MiB


@TWINS
def test_an_mnist_file_that_grows_while_it_is_read_is_refused(twin, tmp_path, monkeypatch):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    real = common.idx.open_regular

    def then_written_to(path, remedy):  # a writer appends between the size check and the read
        opened = real(path, remedy)
        with open(path, "ab") as writer:
            writer.write(b"more")
        return opened

    monkeypatch.setattr(common.idx, "open_regular", then_written_to)
    refused(lambda _: twin.load_mnist(tmp_path, "test"), tmp_path / IMAGES, "changed size while it was read")


# ----------------------------------------------------------------------------- names that are no file


@TWINS
def test_a_folder_in_place_of_a_file_is_an_input_error(twin, tmp_path):
    (tmp_path / "folder.gz").mkdir()
    refused(twin.read_idx, tmp_path / "folder.gz", "is a folder, not a file")
    (tmp_path / IMAGES).mkdir()
    shutil.copy(DEFAULT_DATA_DIR / LABELS, tmp_path / LABELS)
    refused(lambda _: twin.load_mnist(tmp_path, "test"), tmp_path / IMAGES, "is a folder, not a file")


@TWINS
def test_a_data_directory_that_is_a_file_is_an_input_error(twin, tmp_path):
    path = write(tmp_path / "a-file", b"")
    refused(lambda p: twin.load_mnist(p, "test"), path, "is not a folder")


@TWINS
def test_a_symlink_loop_is_an_input_error(twin, tmp_path):
    os.symlink(tmp_path / LABELS, tmp_path / IMAGES)
    os.symlink(tmp_path / IMAGES, tmp_path / LABELS)
    refused(twin.read_idx, tmp_path / IMAGES, "cannot be opened .*symbolic links")
    refused(lambda _: twin.load_mnist(tmp_path, "test"), tmp_path / IMAGES, "cannot be read .*symbolic links")


@TWINS
def test_a_named_pipe_or_a_device_is_refused_without_waiting(twin, tmp_path):
    os.mkfifo(tmp_path / "pipe.gz")  # opened plainly, reading it would wait for a writer forever
    refused(twin.read_idx, tmp_path / "pipe.gz", r"is not a regular file \(a device, pipe or socket\)")
    refused(twin.read_idx, os.devnull, "is not a regular file")
    os.mkfifo(tmp_path / IMAGES)
    shutil.copy(DEFAULT_DATA_DIR / LABELS, tmp_path / LABELS)
    refused(lambda _: twin.load_mnist(tmp_path, "test"), tmp_path / IMAGES, "is not a regular file")


@TWINS
def test_a_file_that_cannot_be_opened_is_an_input_error(twin, tmp_path, monkeypatch):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    real = os.open

    def denied(path, *args, **kwargs):  # what chmod 000 gives, where tests do not run as root
        if os.path.basename(os.fspath(path)) == LABELS:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    refused(twin.read_idx, tmp_path / LABELS, r"cannot be opened \(Permission denied\)")
    refused(lambda _: twin.load_mnist(tmp_path, "test"), tmp_path / LABELS, r"cannot be opened \(Permission denied\)")


@TWINS
def test_a_missing_file_is_an_input_error(twin, tmp_path):
    refused(twin.read_idx, tmp_path / "missing.gz", "does not exist; check the name")


# ----------------------------------------------------------------------------- what a user sees


def test_a_program_reports_a_bad_data_file_in_one_line_with_exit_status_2(tmp_path, capsys):
    (tmp_path / IMAGES).mkdir()
    shutil.copy(DEFAULT_DATA_DIR / LABELS, tmp_path / LABELS)
    with pytest.raises(SystemExit) as status:
        run_cli(lambda argv: sd.load_mnist(tmp_path, "test"), "prog", [])
    err = capsys.readouterr().err
    assert status.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"prog: error: data file {tmp_path / IMAGES} is a folder, not a file: ")
    assert "data/mnist" in err and "--data-dir" in err  # what to do
