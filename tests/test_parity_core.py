"""parity/core.py, the one-batch check of the core pair: it agrees on MNIST and on random
networks, its weight copy is exact, a wrong core formula fails by name, and `python -m parity`
prints its table first.

Run: python -m pytest tests/test_parity_core.py -q   (a few seconds: one batch per check)
"""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scratch.mlp
import torchimpl.mlp
from parity import core, report, tolerances
from parity.__main__ import main
from parity.compare import Record
from wrong_formulas import bias_gradient_over_the_wrong_axis, relu_mask_on_the_wrong_side

pytestmark = pytest.mark.usefixtures("one_thread_per_library")

BATCH = ["logits", "loss", "dW1", "db1", "dW2", "db2", "dW3", "db3", "dX"]
STEP = ["W1", "b1", "W2", "b2", "W3", "b3"]
QUICK = ["--steps", "2", "--limit", "640", "--dtype", "float64"]  # a short run after the core


@pytest.fixture(scope="module")
def first_batch():
    return core.mnist_batch(64)


def failing_names(records):
    return {r.name for r in records if not r.ok}


# ----------------------------------------------------------------------------- the core pair agrees


def test_core_pair_agrees_within_1e13_on_the_first_mnist_batch_and_after_one_sgd_step(first_batch):
    records = core.check_core(*first_batch, layer_sizes=(784, 128, 64, 10), seed=0, dtype="float64", lr=0.5)
    assert [(r.check, r.name) for r in records] == [("one batch", n) for n in BATCH] + [("one SGD step", n) for n in STEP]
    assert all(r.ok and r.tolerance == tolerances.F64_ONE_BATCH for r in records), [vars(r) for r in records]
    assert all(r.dtype == "float64" and r.max_rel_err <= tolerances.F64_ONE_BATCH for r in records)


def test_core_pair_agrees_within_1e5_in_float32(first_batch):
    records = core.check_core(*first_batch, dtype="float32")
    assert len(records) == len(BATCH) + len(STEP)
    assert all(r.ok and r.tolerance == tolerances.F32_ONE_BATCH for r in records), [vars(r) for r in records]


@settings(max_examples=8)
@given(widths=st.lists(st.integers(1, 32), min_size=0, max_size=3), inputs=st.integers(1, 32),
       classes=st.integers(3, 10), n=st.integers(1, 33), seed=st.integers(0, 2**32 - 1))
def test_core_pair_agrees_within_1e13_on_random_architectures_and_batches(widths, inputs, classes, n, seed):
    # Three classes or more: with two, db of the last layer is [s, -s], a sum that can cancel to
    # almost nothing and so has no relative accuracy of its own (see tests/test_properties.py).
    rng = np.random.default_rng(seed)
    sizes = (inputs, *widths, classes)
    X, y = rng.standard_normal((n, inputs)), rng.integers(0, classes, n)
    records = core.check_core(X, y, layer_sizes=sizes, seed=seed, dtype="float64", lr=0.1)
    assert len(records) == 3 + 4 * (len(sizes) - 1)  # logits, loss, dX; dW_i, db_i, W_i, b_i
    assert all(r.ok for r in records), [vars(r) for r in records if not r.ok]


# ----------------------------------------------------------------------------- the copy


def test_weight_copy_is_bit_exact_and_shares_no_memory():
    model = scratch.mlp.init_model((784, 128, 64, 10), np.random.default_rng(0), np.float64)
    net = core.copy_weights(model, torchimpl.mlp.init_model((784, 128, 64, 10), torch.float64))
    params = core.by_scratch_name(net)
    assert list(params) == list(model)
    assert params["W2"] is net[2].weight and params["b3"] is net[4].bias  # W_i -> net[2*(i-1)]
    for name, p in params.items():
        ours, theirs = model[name], p.detach().numpy()
        assert theirs.dtype == np.float64 and np.array_equal(ours.view(np.uint64), theirs.view(np.uint64)), name
        assert not np.shares_memory(ours, theirs), name  # scratch's in-place SGD cannot touch torch's


# ----------------------------------------------------------------------------- a wrong formula fails by name


def test_relu_mask_on_the_wrong_side_fails_every_tensor_below_the_last_relu(first_batch, monkeypatch):
    monkeypatch.setattr(scratch.mlp, "relu_backward", relu_mask_on_the_wrong_side)
    records = core.check_core(*first_batch)
    # logits, loss and layer 3's gradients come before any ReLU backward: still exact
    assert failing_names(records) == {"dW1", "db1", "dW2", "db2", "dX", "W1", "b1", "W2", "b2"}
    assert all(r.max_rel_err > 1e-3 for r in records if not r.ok)  # a wrong formula, not rounding


def test_bias_gradient_over_the_wrong_axis_fails_every_bias_gradient_and_skips_the_step(first_batch, monkeypatch):
    monkeypatch.setattr(scratch.mlp, "linear_backward", bias_gradient_over_the_wrong_axis)
    records = {r.name: r for r in core.check_core(*first_batch)}
    assert failing_names(records.values()) == {"db1", "db2", "db3"}
    # (64,) against torch's (128,) and (10,); db2 has torch's shape (64,) by chance, wrong values
    assert "shape mismatch" in records["db1"].note and "shape mismatch" in records["db3"].note
    assert list(records) == BATCH  # SGD cannot apply a gradient of the wrong shape: no step records


# ----------------------------------------------------------------------------- python -m parity


def test_program_prints_the_core_table_first_then_the_run(capsys):
    assert main(QUICK) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(report.CORE_TITLE + ": 784-128-64-10, the first 64 training images, seed 0")
    assert lines[1] == report.HEADER
    assert [line.split()[-2] for line in lines[2:17]] == ["1.0e-13"] * 15
    assert lines[17] == "" and lines[18].startswith("parity: 784-128-64-10")
    assert lines[-1].startswith("parity PASS: ") and "core pair: one batch and one step <= " in lines[-1]


def test_program_json_has_the_core_records(capsys):
    assert main([*QUICK, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in out["core"]] == BATCH + STEP
    assert all(r["ok"] and r["dtype"] == "float64" and r["max_rel_err"] <= tolerances.F64_ONE_BATCH
               for r in out["core"])
    assert out["ok"] is True and out["records"]  # the run's records are still there


def test_a_failing_core_record_makes_the_program_exit_1(monkeypatch, capsys):
    check_core = core.check_core

    def with_a_planted_failure(*args, **kwargs):
        return [*check_core(*args, **kwargs), Record("one batch", "planted", "float64", (), 1.0, 1.0, 1e-13)]

    monkeypatch.setattr(core, "check_core", with_a_planted_failure)
    assert main([*QUICK, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and all(r["ok"] for r in out["records"])  # only the core failed
    assert [r["name"] for r in out["core"] if not r["ok"]] == ["planted"]
    assert main(QUICK) == 1
    assert "failing: core planted" in capsys.readouterr().out.splitlines()[-1]
