"""The package as a user installs it: a wheel, in a fresh virtual environment, run from elsewhere.

Builds the wheel from a copy of this checkout (pip wheel --no-deps, setuptools in pip's isolated
build environment, taken from the package index), installs it with --no-deps into a new venv
under tmp_path and runs both training programs from an empty folder outside the clone. The
dependencies (numpy, torch, ...) are not installed again: a .pth file in the new venv appends
this interpreter's site-packages after the venv's own, so the programs import the wheel's copy of
mlp-twins and borrow only its dependencies (the test checks which copy ran). Installing the
dependencies too takes about 45 s more; .ci/stage-wheel does that with `pip install .` and
runs all four programs. About 20 s here.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["common", "scratch", "torchimpl", "parity", "benchmarks"]  # folders of the code
DATA_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
# What a clone holds beside the source that the build must not see (.gitignore's entries).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".hypothesis", ".benchmarks", ".whl")
EPOCH_LINE = re.compile(r"^epoch 1/1  train loss \S+  train acc \S+  test acc \S+  \S+s$")


def is_test_file(name):
    base = name.rsplit("/", 1)[-1]
    return (name.startswith("tests/") or "/tests/" in name or base == "conftest.py"
            or base.startswith("test_") or base.endswith("_test.py"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel path, the wheel's file names, the venv's python, environment, a folder outside the clone)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp / "dist"),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    log = build.stdout + build.stderr
    assert "deprecat" not in log.lower(), [line for line in log.splitlines() if "eprecat" in line]
    (wheel,) = (tmp / "dist").glob("mlp_twins-*.whl")

    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Lines of a .pth file are appended to sys.path after the venv's own site-packages; the .pth
    # files in those folders are not read, so an editable install of this clone there stays off.
    borrowed = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    Path(purelib, "zz_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in borrowed))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    return wheel, names, python, env, elsewhere


def run(installed, *args):
    _, _, python, env, elsewhere = installed
    return subprocess.run([str(python), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_wheel_carries_every_module_and_the_four_mnist_files_but_no_test(installed):
    wheel, names, *_ = installed
    assert not [n for n in names if is_test_file(n)], "test files in the wheel"
    assert all(f"mlp_twins_data/{name}" in names for name in DATA_FILES), names
    # benchmarks/ is listed module by module in pyproject.toml: a new module must be added there.
    modules = {p.relative_to(ROOT).as_posix() for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    missing = sorted(m for m in modules if not is_test_file(m) and "__pycache__" not in m and m not in names)
    assert not missing, f"modules missing from {wheel.name} (list them in pyproject.toml): {missing}"


def test_the_metadata_has_an_spdx_licence_and_the_licence_files(installed):
    wheel, names, *_ = installed
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT AND CC-BY-SA-3.0" in metadata.splitlines()
    assert not [line for line in metadata.splitlines() if line.startswith(("License:", "Classifier: License"))]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert any(n.endswith(".dist-info/licenses/data/mnist/README.md") for n in names)


def test_the_installed_copy_runs_and_finds_its_own_data(installed):
    _, _, python, _, elsewhere = installed
    result = run(installed, "-c", "import common.idx, mlp_twins_data, benchmarks.__main__ as b, sys; "
                 "print(common.idx.__file__); print(common.idx.DEFAULT_DATA_DIR); print(b.DEFAULT_OUT)")
    assert result.returncode == 0, result.stderr
    code, data_dir, out = result.stdout.splitlines()
    prefix = str(python.parent.parent)
    assert code.startswith(prefix) and data_dir.startswith(prefix), (code, data_dir)
    assert Path(data_dir).name == "mlp_twins_data"
    assert not Path(out).is_absolute(), out  # reports go under the working folder, not site-packages


@pytest.mark.parametrize("module", ["scratch.train", "torchimpl.train"])
def test_a_program_of_the_wheel_trains_one_epoch_from_a_folder_outside_the_clone(installed, module):
    result = run(installed, "-m", module, "--epochs", "1", "--limit", "500")
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.strip().splitlines()
    assert header.startswith(f"{module.split('.')[0]}: 784-128-64-10 relu, sgd lr 0.5, ce loss, batch 64, "
                             "float32, 500 train / 10000 test images"), header
    assert EPOCH_LINE.match(line), line


def test_data_dir_still_overrides_the_shipped_files(installed):
    result = run(installed, "-m", "scratch.train", "--epochs", "1", "--limit", "500", "--data-dir", "nowhere")
    assert result.returncode == 2
    assert "data directory nowhere does not exist" in result.stderr.strip().splitlines()[-1]
