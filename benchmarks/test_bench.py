"""pytest-benchmark timings of one training step and one epoch for every backend.

Not part of the main test suite (pyproject's testpaths is tests/); run them with
    python -m pytest benchmarks/                       # times, with pytest-benchmark's table
    python -m pytest benchmarks/ --benchmark-disable   # each case once, as a smoke test
Default network 784-128-64-10, batch 64, full MNIST, float32, the same weights for every
backend; CUDA cases are skipped where torch.cuda.is_available() is False. Each timed call
ends with the device synchronised, so a CUDA step is timed to its end, not to its launch.
python -m benchmarks (benchmarks/__main__.py) is the full measurement with checks and reports.
"""

import math

import numpy as np
import pytest
import torch

from benchmarks.runner import BACKENDS, CUDA_BACKENDS, check_batches
from scratch.data import load_mnist
from scratch.toolbox.model import init_params

HIDDEN, BATCH, LR, SEED = [128, 64], 64, 0.5, 0
STEP_ROUNDS, EPOCH_ROUNDS = 200, 3

CASES = [pytest.param(name, marks=pytest.mark.skipif(
    name in CUDA_BACKENDS and not torch.cuda.is_available(), reason="CUDA is not available"))
    for name in BACKENDS]

# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist():
    return load_mnist()


@pytest.fixture
def backend(request, mnist):
    X, y = mnist
    cls, device = BACKENDS[request.param]
    params = init_params([784, *HIDDEN, 10], np.random.default_rng(SEED), np.float32)
    return cls(X, y, params, BATCH, LR, SEED, device)


# ----------------------------------------------------------------------------- timings


@pytest.mark.parametrize("backend", CASES, indirect=True)
def test_one_training_step(benchmark, backend):
    idx = check_batches(len(backend.X), BATCH)[0]

    def step():
        loss = backend.step(idx)
        backend.sync()
        return loss

    loss = benchmark.pedantic(step, rounds=STEP_ROUNDS, warmup_rounds=10)
    assert math.isfinite(float(loss))


@pytest.mark.parametrize("backend", CASES, indirect=True)
def test_one_training_epoch(benchmark, backend):
    def epoch():
        backend.epoch()
        backend.sync()

    benchmark.pedantic(epoch, rounds=EPOCH_ROUNDS, warmup_rounds=1)
    assert 0 < backend.epoch_loss() < math.log(10)  # it trained: below the loss of a uniform guess
