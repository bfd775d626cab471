"""The study page's figures (parity/study_figures.py): every row measured, every verdict earned.

On a small MNIST slice with a few steps: each core row has numbers and passes; a wrong formula
swapped into scratch.mlp fails exactly the rows that use it; a wrong weight draw fails the
distribution check; every toolbox piece passes its own short float64 run.
Run: python -m pytest tests/test_study_figures.py -q
"""

import importlib
import math

import numpy as np
import pytest
import torch

import scratch.mlp
from parity import study_figures, study_toolbox
from parity.compare import NOISE_DRIVEN, Record
from parity.run import Config, load_data
from wrong_formulas import relu_mask_on_the_wrong_side

pytestmark = pytest.mark.usefixtures("one_thread_per_library")

CORE_KEYS = {"init_model", "linear_forward", "linear_backward", "relu_forward", "relu_backward", "forward",
             "softmax_cross_entropy", "backward", "SGD", "iterate_minibatches", "train_epoch", "evaluate", "main",
             "finite differences"}
STEPS = 8


@pytest.fixture(scope="module")
def mnist():
    """512 training images (8 batches of 64) and 500 test images."""
    (X, y), (X_test, y_test) = load_data(Config(limit=512))
    return X, y, X_test[:500], y_test[:500]


@pytest.fixture(scope="module")
def core(mnist):
    return study_figures.measure_core(*mnist, steps=STEPS)


def failing_rows(figures):
    return {key for key, found in figures.items() if any(not f.record.ok for f in found)}


def failing_names(found):
    return {f.record.name for f in found if not f.record.ok}


def test_every_core_row_has_measured_numbers_and_passes(core):
    figures, losses = core
    assert set(figures) == CORE_KEYS
    for key, found in figures.items():
        assert found, f"{key}: no figure"
        for figure in found:
            r = figure.record
            assert isinstance(r, Record) and figure.what, key
            assert math.isfinite(r.max_abs_err) and math.isfinite(r.max_rel_err), f"{key} {r.name}"
            assert r.tolerance is not None and r.ok, f"{key} {r.name}: {r.max_rel_err:.2e} > {r.tolerance}"
    assert not failing_rows(figures)
    for side in ("scratch", "torch"):
        assert losses[side].shape == (STEPS,) and np.all(np.isfinite(losses[side]))
    np.testing.assert_allclose(losses["scratch"], losses["torch"], rtol=1e-12)


def test_core_rows_compare_what_they_say(core):
    figures, _ = core
    assert {f.record.name for f in figures["backward"]} == {"dW1", "db1", "dW2", "db2", "dW3", "db3", "dX"}
    assert {f.record.name for f in figures["SGD"]} == {"W1", "b1", "W2", "b2", "W3", "b3"}
    assert {f.record.name for f in figures["finite differences"]} == {"dW1", "db1", "dW2", "db2", "dW3", "db3", "dX"}
    assert {f.record.name for f in figures["train_epoch"]} == {"W1", "b1", "W2", "b2", "W3", "b3", "loss (every step)"}
    copied = figures["init_model"][0].record
    assert (copied.max_abs_err, copied.tolerance, copied.checked) == (0.0, 0.0, "max_abs_err")
    assert "64, 784" in figures["linear_forward"][0].what
    assert "differ by design" in figures["iterate_minibatches"][0].what
    main = figures["main"][0]
    assert "scratch 0." in main.what and "torch 0." in main.what


def test_measure_core_is_deterministic_and_leaves_torchs_generator_alone(mnist, core):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    again, losses = study_figures.measure_core(*mnist, steps=STEPS)
    assert torch.equal(torch.rand(3), expected)
    for key, found in core[0].items():
        assert [(f.record.max_abs_err, f.record.max_rel_err) for f in found] == \
               [(f.record.max_abs_err, f.record.max_rel_err) for f in again[key]], key
    assert np.array_equal(losses["scratch"], core[1]["scratch"])


def test_a_relu_mask_on_the_wrong_side_fails_the_rows_that_use_it_and_not_forward(mnist, monkeypatch):
    monkeypatch.setattr(scratch.mlp, "relu_backward", relu_mask_on_the_wrong_side)
    figures, _ = study_figures.measure_core(*mnist, steps=2)
    failed = failing_rows(figures)
    assert {"relu_backward", "backward", "finite differences"} <= failed
    assert not failed & {"init_model", "linear_forward", "linear_backward", "relu_forward", "forward",
                         "softmax_cross_entropy", "iterate_minibatches"}
    below_the_first_relu = {"dW1", "db1", "dW2", "db2", "dX"}  # the last layer's gradients stay exact
    assert failing_names(figures["backward"]) == below_the_first_relu
    assert failing_names(figures["finite differences"]) == below_the_first_relu


def test_the_distribution_check_fails_weights_drawn_from_twice_the_bound(mnist, monkeypatch):
    def too_wide(layer_sizes, rng, dtype=np.float32):
        model = {}
        for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]), start=1):
            bound = 2 / np.sqrt(fan_in)
            model[f"W{i}"] = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)
            model[f"b{i}"] = rng.uniform(-bound, bound, size=fan_out).astype(dtype)
        return model

    monkeypatch.setattr(scratch.mlp, "init_model", too_wide)
    figures, _ = study_figures.measure_core(*mnist, steps=1)
    found = figures["init_model"]
    assert "init_model" in failing_rows(figures)
    assert found[0].record.ok  # the copy into torch is still bit for bit
    failed = failing_names(found)
    assert {name for name in failed if name.startswith("scratch draw: entries inside")}
    assert {name for name in failed if name.startswith("scratch draw: root mean square")}
    assert not {name for name in failed if name.startswith("torch")}
    assert "forward" not in failing_rows(figures)  # both twins still start from the same (wrong) weights


def test_every_toolbox_piece_passes_its_own_float64_run(mnist):
    X, y, X_test, y_test = mnist
    pieces = study_toolbox.measure_toolbox((X, y), (X_test, y_test), steps=4, limit=128)
    assert [p.name for p in pieces] == [p.name for p in study_toolbox.PIECES]
    assert len(pieces) == 14 and all(not p.figures for p in study_toolbox.PIECES)
    for piece in pieces:
        assert piece.figures and piece.ok, piece.name
        for figure in piece.figures:
            assert figure.run_ok is True and figure.record.ok and figure.record.tolerance is not None
            assert "run verdict ok" in figure.what and "float64" in figure.what
        assert piece.torch_code and piece.formula and piece.flags
    batchnorm = next(p for p in pieces if p.name == "batch norm")
    assert any(f.record.note == NOISE_DRIVEN for f in batchnorm.figures)  # its biases under Adam


def test_every_named_scratch_piece_exists():
    for piece in study_toolbox.PIECES:
        for path, names in piece.scratch:
            module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
            missing = [name for name in names if not hasattr(module, name)]
            assert not missing, f"{piece.name}: {path} has no {missing}"
