"""Shared test settings: hypothesis runs derandomized, so CI draws the same examples every time;
tests that run both twins in one process can ask for one thread per library; and scratch's own
tests can run alone, where torch is not installed.

`pytest --without-torch` runs scratch's own tests: it collects only the files in SCRATCH_ALONE
and deselects their tests marked `torch` (those that compare against torch, or run torchimpl,
parity or benchmarks). Those files import torch inside a try, so they load without it.
.ci/stage-scratch-alone runs this on Python 3.10 and 3.13 in virtual environments that have NumPy
and no torch, and asserts how many tests passed. Without the flag nothing changes. Where torch is
not installed, pytest without the flag stops at once and says why.
"""

import importlib.util
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("deterministic")

HAVE_TORCH = importlib.util.find_spec("torch") is not None
TESTS = Path(__file__).resolve().parent
# The files that hold scratch's own tests. Every other test file needs torch all the way through.
SCRATCH_ALONE = ["test_accuracy.py", "test_checkpoint.py", "test_core.py", "test_data.py", "test_estimator.py",
                 "test_network.py", "test_oracles.py", "test_presets.py", "test_programs.py",
                 "test_toolbox_layers.py", "test_toolbox_losses.py", "test_toolbox_optim.py", "test_twins.py",
                 "test_cli_values.py", "test_data_safety.py", "test_divergence.py", "test_estimator_inputs.py",
                 "test_fuzz_idx.py", "test_fuzz_model_files.py", "test_model_file_safety.py", "test_outputs.py"]


def pytest_addoption(parser):
    parser.addoption("--without-torch", action="store_true",
                     help="scratch's own tests alone: collect only conftest.SCRATCH_ALONE, deselect the tests "
                          "marked torch (.ci/stage-scratch-alone)")


def pytest_configure(config):
    config.addinivalue_line("markers", "torch: needs torch (compares against it, or runs torchimpl, parity "
                                       "or benchmarks); pytest --without-torch deselects it")
    if not HAVE_TORCH and not config.getoption("--without-torch"):
        raise pytest.UsageError("torch is not installed here: install the project (python -m pip install -e "
                                "'.[dev]'), or run scratch's own tests alone with --without-torch")


def pytest_report_header(config):
    if not config.getoption("--without-torch"):
        return None
    where = ("torch is installed here, so only a venv without it shows that these tests need none"
             if HAVE_TORCH else "torch is not installed")
    return f"--without-torch: scratch's own tests ({len(SCRATCH_ALONE)} files), less those marked torch; {where}"


def pytest_ignore_collect(collection_path, config):
    """With --without-torch, a test file outside SCRATCH_ALONE is not collected (unless named on
    the command line, where it fails as it would without torch)."""
    if (config.getoption("--without-torch") and collection_path.parent == TESTS
            and collection_path.name.startswith("test_") and collection_path.suffix == ".py"
            and collection_path.name not in SCRATCH_ALONE):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--without-torch"):
        return
    deselected = [item for item in items if item.get_closest_marker("torch") is not None]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item.get_closest_marker("torch") is None]


@pytest.fixture(scope="module")
def one_thread_per_library():
    """One BLAS thread and one torch thread while both twins share this process: their two
    thread pools (OpenBLAS, OpenMP) spin against each other on a small machine and made tiny
    networks 10-100x slower. Use with pytestmark = pytest.mark.usefixtures(...). Without torch
    only NumPy's pool is in the process, and the fixture leaves it as it is."""
    if not HAVE_TORCH:
        yield
        return
    from parity.run import full_precision_one_thread  # imports torch

    with full_precision_one_thread():
        yield
