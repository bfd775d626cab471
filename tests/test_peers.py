"""Tests of the peer backends: scikit-learn's MLPClassifier (benchmarks/peers.py) and torch.compile
(benchmarks/compiled.py), each held to the NumPy twin's steps by the runner's step check.

The compiled CPU backend is built once, on an 8-4-2 network: inductor's compile is the slow part
(measured on 2 busy cores: about 30 s with an empty cache, under 10 s from inductor's on-disk
cache), and its size hardly depends on the network's.
"""

import math

import numpy as np
import pytest
import torch

from benchmarks import compiled, peers, runner
from benchmarks.backends import NumpyBackend
from benchmarks.compiled import TorchCompiledBackend, compile_counts, compile_note
from benchmarks.peers import SklearnBackend, sklearn_note
from common.errors import InputError
from scratch.data import load_mnist
from scratch.toolbox.model import init_params

pytestmark = pytest.mark.usefixtures("one_thread_per_library")

LR, SEED = 0.5, 0

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small_mnist():
    X, y = load_mnist()
    return X[:512], y[:512]


@pytest.fixture(scope="module")
def mnist_params():
    return init_params([784, 32, 10], np.random.default_rng(0))


def reference_steps(X, y, params, batch_size):
    batches = runner.check_batches(len(X), batch_size)
    return batches, runner.run_steps(NumpyBackend(X, y, params, batch_size, LR, SEED), batches)


# ----------------------------------------------------------------------------- scikit-learn


def test_sklearn_takes_the_numpy_steps_and_a_wrong_learning_rate_fails(small_mnist, mnist_params):
    X, y = small_mnist
    batches, reference = reference_steps(X, y, mnist_params, 64)
    right = runner.step_check(SklearnBackend(X, y, mnist_params, 64, LR, SEED), batches, reference)
    wrong = runner.step_check(SklearnBackend(X, y, mnist_params, 64, LR / 2, SEED), batches, reference)
    assert right["ok"] and right["loss_rel_err"] <= runner.STEP_LOSS_RTOL, right
    assert right["param_rel_err"] <= runner.STEP_PARAM_RTOL
    assert not wrong["ok"] and wrong["param_rel_err"] > runner.STEP_PARAM_RTOL


def test_sklearn_epoch_trains_and_reshuffles_every_epoch(small_mnist, mnist_params):
    X, y = small_mnist
    backend = SklearnBackend(X, y, mnist_params, 64, LR, SEED)
    losses = []
    for _ in range(3):
        backend.epoch()
        losses.append(backend.epoch_loss())
    assert losses[2] < losses[1] < losses[0] and losses[2] < math.log(10), losses  # below chance
    # From the same weights, a second epoch on a fresh order ends elsewhere (an integer
    # random_state would repeat the first epoch's order exactly).
    backend.set_params(mnist_params)
    backend.epoch()
    first = backend.get_params()
    backend.set_params(mnist_params)
    backend.epoch()
    assert not np.array_equal(first["W1"], backend.get_params()["W1"])


def test_sklearn_set_params_writes_into_the_arrays_its_optimizer_updates(small_mnist, mnist_params):
    X, y = small_mnist
    backend = SklearnBackend(X, y, mnist_params, 64, LR, SEED)
    arrays = [id(a) for a in backend.model.coefs_ + backend.model.intercepts_]
    backend.epoch()
    backend.set_params(mnist_params)
    assert [id(a) for a in backend.model.coefs_ + backend.model.intercepts_] == arrays
    assert backend.model.coefs_[0].dtype == np.float32
    for name, value in backend.get_params().items():
        np.testing.assert_array_equal(value, mnist_params[name])
    assert backend.record_fields["scikit_learn"]


def test_sklearn_row_is_timed_by_the_runner_beside_numpy(small_mnist):
    X, y = small_mnist
    records = runner.run_config(X, y, [32], 64, ["numpy", "sklearn"], runs=1, log=lambda line: None)
    sklearn = records[1]
    assert sklearn["backend"] == "sklearn" and "error" not in sklearn, sklearn
    assert sklearn["step_check"]["ok"] and sklearn["loss_ok"] and sklearn["median_s"] > 0


def test_without_scikit_learn_the_row_says_how_to_install_it(monkeypatch):
    assert sklearn_note() is None  # installed here (the dev extra)
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda name: None)
    assert "pip install" in sklearn_note() and "scikit-learn" in sklearn_note()


# ----------------------------------------------------------------------------- torch.compile on the CPU


@pytest.fixture(scope="module")
def tiny():
    """200 examples of 8 features, 2 classes: batches of 64 and a last one of 8."""
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((200, 8), dtype=np.float32), rng.integers(0, 2, 200)
    return X, y, init_params([8, 4, 2], np.random.default_rng(1))


@pytest.fixture(scope="module")
def compiled_cpu(tiny):
    X, y, params = tiny
    return TorchCompiledBackend(X, y, params, 64, LR, SEED)


def test_compile_is_timed_apart_for_every_batch_size_and_the_weights_put_back(tiny, compiled_cpu):
    _, _, params = tiny
    fields = compiled_cpu.record_fields
    assert compiled_cpu.name == "torch-cpu-compiled" and fields["compile_mode"] == "default"
    assert fields["compiled_batch_sizes"] == [64, 8] and fields["compile_seconds"] > 0
    assert fields["compile_cache"]["graphs"] >= 2  # one graph per batch size (dynamic=False)
    compiled_cpu.set_params(params)
    for name, value in compiled_cpu.get_params().items():
        np.testing.assert_array_equal(value, params[name])


def test_compiled_cpu_takes_the_numpy_steps(tiny, compiled_cpu):
    X, y, params = tiny
    batches, reference = reference_steps(X, y, params, 64)
    compiled_cpu.set_params(params)
    check = runner.step_check(compiled_cpu, batches, reference)
    assert check["ok"] and check["loss_rel_err"] <= runner.STEP_LOSS_RTOL, check


def test_timed_epochs_compile_nothing(tiny, compiled_cpu):
    _, _, params = tiny
    compiled_cpu.set_params(params)
    before = compile_counts()
    seconds = runner.time_epochs(compiled_cpu, runs=2)  # the last batch of 8 included
    assert compile_counts() == before  # no graph compiled or looked up while timed
    assert max(seconds) < compiled_cpu.record_fields["compile_seconds"]
    assert math.isfinite(compiled_cpu.epoch_loss()) and compiled_cpu.epoch_loss() > 0


def test_a_failed_compile_is_one_line(tiny, monkeypatch):
    X, y, params = tiny

    def broken(fn, **options):
        def run(*args):
            raise RuntimeError("C++ compile error\n  In file included from ...\n  more")
        return run

    monkeypatch.setattr(compiled.torch, "compile", broken)
    with pytest.raises(RuntimeError) as err:
        TorchCompiledBackend(X, y, params, 64, LR, SEED)
    assert str(err.value) == "torch.compile(mode='default') failed: RuntimeError: C++ compile error"


def test_compile_note_names_a_missing_compiler(monkeypatch):
    assert compile_note("cpu") is None  # g++ is on PATH here
    monkeypatch.setenv("CXX", "no-such-c++-compiler")
    assert "'no-such-c++-compiler' is not on PATH" in compile_note("cpu")


# ----------------------------------------------------------------------------- torch.compile on CUDA


def test_compiled_cuda_takes_the_numpy_steps_or_is_refused_in_one_line(tiny):
    X, y, params = tiny
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            TorchCompiledBackend(X, y, params, 64, LR, SEED, "cuda")
        return
    backend = TorchCompiledBackend(X, y, params, 64, LR, SEED, "cuda")
    assert backend.record_fields["compile_mode"] == "reduce-overhead"
    batches, reference = reference_steps(X, y, params, 64)
    check = runner.step_check(backend, batches, reference)
    assert check["ok"], check
    before = compile_counts()
    backend.set_params(params)
    runner.time_epochs(backend, runs=1)
    assert compile_counts() == before
