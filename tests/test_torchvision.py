"""The torch twin's torchvision reader (torchimpl/data.py) and what happens where it cannot be had.

Where torchvision imports: torchvision.datasets.MNIST with ToTensor() and Normalize gives both
twins' arrays bit for bit; load_mnist reads through it from a folder holding one split, each file
once; both programs run with it and print the same lines. Those tests skip where torchvision
does not import (PyPI has no torchvision for the main venv's CPU torch 2.13.0);
MLP_TWINS_REQUIRE_TORCHVISION=1 turns that skip into a failure (.ci/stage-torchvision sets it).
The fallback tests run everywhere: a torchvision that is installed but does not import is said
once on stderr, and is an error when use_torchvision=True asks for it.
"""

import collections
import gzip
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import scratch.data as sd
import torchimpl.data as td
from common.errors import InputError
from common.idx import DEFAULT_DATA_DIR, FILES

ROOT = pathlib.Path(__file__).resolve().parent.parent
MEAN, STD = 0.1307, 0.3081  # the MNIST normalisation every torchvision example quotes
EPOCH_LINE = re.compile(r"^epoch 1/1  train loss \S+  train acc \S+  test acc \S+  \S+s$")
NMS = "operator torchvision::nms does not exist"  # what PyPI's torchvision 0.28.0 says beside torch 2.13.0+cpu


@pytest.fixture(scope="module")
def torchvision():
    """The torchvision module, or a skip saying why it does not import (a failure under
    MLP_TWINS_REQUIRE_TORCHVISION=1)."""
    datasets, err = td._import_torchvision()
    if datasets is None:
        reason = f"torchvision does not import here ({td._first_line(err)})"
        if os.environ.get("MLP_TWINS_REQUIRE_TORCHVISION") == "1":
            pytest.fail(f"MLP_TWINS_REQUIRE_TORCHVISION=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return sys.modules["torchvision"]


def run(args, **kwargs):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=ROOT, **kwargs)


# ----------------------------------------------------------------------------- torchvision's own pipeline


@pytest.fixture(scope="module")
def torchvision_root(tmp_path_factory):
    """A root laid out as torchvision.datasets.MNIST expects it: the four files unzipped under MNIST/raw/."""
    root = tmp_path_factory.mktemp("torchvision-root")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES["train"] + FILES["test"]:
        (raw / name.removesuffix(".gz")).write_bytes(gzip.decompress((DEFAULT_DATA_DIR / name).read_bytes()))
    return root


@pytest.mark.parametrize("split", ["train", "test"])
def test_torchvision_mnist_with_to_tensor_and_normalize_gives_both_twins_arrays(torchvision, torchvision_root, split):
    from torchvision import datasets, transforms

    normalize = transforms.Normalize((MEAN,), (STD,))
    ds = datasets.MNIST(torchvision_root, train=split == "train", download=False,
                        transform=transforms.Compose([transforms.ToTensor(), normalize]))
    images, labels = zip(*(ds[i] for i in range(len(ds))))  # image by image: PIL, ToTensor, Normalize
    Xv, yv = torch.stack(images).reshape(len(ds), -1), torch.tensor(labels)  # N, D and N
    assert Xv.dtype == torch.float32 and tuple(Xv.shape) == ({"train": 60000, "test": 10000}[split], 784)

    X, y = sd.load_mnist(None, split)
    assert np.array_equal((X - np.float32(MEAN)) / np.float32(STD), Xv.numpy()) and np.array_equal(y, yv.numpy())
    for use_torchvision in (True, False):
        Xt, yt = td.load_mnist(None, split, use_torchvision=use_torchvision)
        assert torch.equal(normalize(Xt.reshape(-1, 1, 28, 28)).reshape(len(Xt), -1), Xv), use_torchvision
        assert torch.equal(yt, yv), use_torchvision


def test_torchvision_reader_matches_the_frombuffer_reader(torchvision):
    Xv, yv = td.load_mnist(None, "test", use_torchvision=True)
    Xb, yb = td.load_mnist(None, "test", use_torchvision=False)
    assert torch.equal(Xv, Xb) and torch.equal(yv, yb)
    assert td.last_reader == "torch.frombuffer (use_torchvision=False)"
    td.load_mnist(None, "test")
    assert td.last_reader == f"torchvision.datasets.MNIST (torchvision {torchvision.__version__})"


# ----------------------------------------------------------------------------- one split, each file once


def test_a_folder_holding_only_the_test_files_loads_through_torchvision(torchvision, tmp_path):
    for name in FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    X, y = td.load_mnist(tmp_path, "test", use_torchvision=True)
    Xb, yb = td.load_mnist(None, "test", use_torchvision=False)
    assert torch.equal(X, Xb) and torch.equal(y, yb)
    with pytest.raises(InputError, match="train-images-idx3-ubyte.gz is missing"):
        td.load_mnist(tmp_path, "train", use_torchvision=True)


@pytest.mark.parametrize("split", ["train", "test"])
def test_through_torchvision_each_file_of_the_split_is_read_and_checksummed_once(torchvision, split, monkeypatch):
    reads, verified = collections.Counter(), collections.Counter()
    os_open, read_verified = os.open, td.read_verified

    def counting_read(path, *args, **kwargs):  # common/idx.py opens every data file with os.open
        name = os.path.basename(os.fspath(path))
        if name in FILES["train"] + FILES["test"]:
            reads[name] += 1
        return os_open(path, *args, **kwargs)

    def counting_verify(path):
        verified[pathlib.Path(path).name] += 1
        return read_verified(path)

    monkeypatch.setattr(os, "open", counting_read)
    monkeypatch.setattr(td, "read_verified", counting_verify)
    td.load_mnist(None, split, use_torchvision=True)
    assert reads == verified == {name: 1 for name in FILES[split]}


# ----------------------------------------------------------------------------- the programs

# python -m torchimpl.train, with torchvision.datasets.MNIST watched: which splits it read.
WATCHED_TORCHIMPL = """
import runpy, sys
from torchvision import datasets
real, calls = datasets.MNIST, []
def watched(*args, **kwargs):
    calls.append("train" if kwargs["train"] else "test")
    return real(*args, **kwargs)
datasets.MNIST = watched
try:
    runpy.run_module("torchimpl.train", run_name="__main__", alter_sys=True)
finally:
    print(f"torchvision.datasets.MNIST read: {calls}", file=sys.stderr)
"""


def assert_same_header_shape(torch_out, scratch_out):
    """Both print a header and one epoch line; the headers agree but for the name and the device."""
    (torch_header, torch_line), (scratch_header, scratch_line) = torch_out.splitlines(), scratch_out.splitlines()
    assert scratch_header.startswith("scratch: 784-128-64-10 relu, sgd lr 0.5, ce loss, batch 64, float32, "
                                     "500 train / 10000 test images"), scratch_header
    expected = re.escape("torchimpl: " + scratch_header.removeprefix("scratch: ")) + r", (cpu|cuda|mps)"
    assert re.fullmatch(expected, torch_header), (torch_header, scratch_header)
    assert EPOCH_LINE.match(torch_line) and EPOCH_LINE.match(scratch_line), (torch_line, scratch_line)


def test_both_programs_run_and_print_the_same_header_with_the_torchvision_reader(torchvision):
    flags = ["--epochs", "1", "--limit", "500"]
    torch_run, scratch_run = run(["-c", WATCHED_TORCHIMPL, *flags]), run(["-m", "scratch.train", *flags])
    assert torch_run.returncode == 0, torch_run.stderr
    assert scratch_run.returncode == 0, scratch_run.stderr
    assert torch_run.stderr.splitlines() == ["torchvision.datasets.MNIST read: ['train', 'test']"]  # no note
    assert_same_header_shape(torch_run.stdout, scratch_run.stdout)


# ----------------------------------------------------------------------------- without a working torchvision


def fake_torchvision(folder):
    """A torchvision that is installed but fails on import, as PyPI's 0.28.0 does beside the CPU
    torch 2.13.0 (the first line is the real message; the note gives that line only)."""
    package = folder / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'raise RuntimeError("{NMS}\\nsecond line, left out of the note")\n')
    return folder


@pytest.fixture
def broken_torchvision(tmp_path, monkeypatch):
    """In this process: the fake torchvision first on sys.path, the real one (if any) out of
    sys.modules, torchimpl.data's import tried afresh and its note not yet said."""
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(fake_torchvision(tmp_path / "site")))
    monkeypatch.setattr(td, "_torchvision", None)
    monkeypatch.setattr(td, "_fallback_said", False)


NOTE = (f"torchimpl.data: torchvision is installed but does not import (RuntimeError: {NMS}); reading MNIST "
        f"with torch.frombuffer instead (install the torchvision built for torch {torch.__version__} to use it)")


def test_a_torchvision_that_does_not_import_is_said_once_on_stderr_and_frombuffer_reads(broken_torchvision, capsys):
    X, y = td.load_mnist(None, "test")
    td.load_mnist(None, "test")
    assert capsys.readouterr().err.splitlines() == [NOTE]  # two loads, one note
    assert td.last_reader == f"torch.frombuffer (torchvision does not import: RuntimeError: {NMS})"
    Xb, yb = td.load_mnist(None, "test", use_torchvision=False)
    assert torch.equal(X, Xb) and torch.equal(y, yb)


def test_asking_for_a_torchvision_that_does_not_import_is_an_error_with_its_reason(broken_torchvision, capsys):
    with pytest.raises(InputError, match=re.escape(f"torchvision was asked for but does not import "
                                                   f"(RuntimeError: {NMS}): install the torchvision built "
                                                   f"for torch {torch.__version__}")) as err:
        td.load_mnist(None, "test", use_torchvision=True)
    assert isinstance(err.value.__cause__, RuntimeError)  # the import error travels with it
    assert capsys.readouterr().err == ""  # the error says it: no note besides


def test_no_torchvision_at_all_falls_back_without_a_note_but_an_error_when_asked_for(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    monkeypatch.setattr(td, "_torchvision", None)
    monkeypatch.setattr(td, "_fallback_said", False)
    td.load_mnist(None, "test")
    assert capsys.readouterr().err == ""  # torchvision is optional: its absence is no news
    assert td.last_reader.startswith("torch.frombuffer (torchvision does not import: ModuleNotFoundError: ")
    with pytest.raises(InputError, match=r"torchvision was asked for but does not import \(ModuleNotFoundError"):
        td.load_mnist(None, "test", use_torchvision=True)


def test_the_program_says_once_that_an_installed_torchvision_does_not_import_and_trains(tmp_path):
    site = fake_torchvision(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    flags = ["--epochs", "1", "--limit", "500"]
    torch_run, scratch_run = run(["-m", "torchimpl.train", *flags], env=env), run(["-m", "scratch.train", *flags])
    assert torch_run.returncode == 0, torch_run.stderr
    assert torch_run.stderr.splitlines() == [NOTE]  # the train and the test split read, one note
    assert_same_header_shape(torch_run.stdout, scratch_run.stdout)
