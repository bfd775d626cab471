"""The parity suite itself: its error measure, its verdicts on real MNIST, its program, and that
it fails, naming the tensor, when a backward formula is wrong.

Run: python -m pytest tests/test_parity.py -q   (about half a minute: one full float64 epoch)
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import scratch.mlp
from common.errors import run_cli
from parity import tolerances
from parity.__main__ import PROG, main
from parity.compare import compare_one_batch, errors
from parity.convert import parameters_by_scratch_name
from parity.run import Config, full_precision_one_thread, load_data, run, twins
from scratch.toolbox import model
from wrong_formulas import bias_gradient_over_the_wrong_axis, relu_mask_on_the_wrong_side

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mnist():
    return load_data(Config())


@pytest.fixture
def one_thread():
    with full_precision_one_thread():
        yield


def swap_in(monkeypatch, name, wrong):
    """Replace the core's scratch.mlp.<name> wherever scratch.toolbox.model finds it (through the
    module, or the activation table), so the network's backward runs the wrong formula."""
    monkeypatch.setattr(scratch.mlp, name, wrong)
    monkeypatch.setattr(model, name, wrong, raising=False)
    if name == "relu_backward" and hasattr(model, "ACTIVATIONS"):
        monkeypatch.setitem(model.ACTIVATIONS, "relu", (model.ACTIVATIONS["relu"][0], wrong))


def failing_names(records):
    return {r.name for r in records if not r.ok}


# ----------------------------------------------------------------------------- the error measure


def test_error_is_max_abs_difference_over_max_abs_torch_value():
    abs_err, rel_err = errors(np.array([1.0, -4.0, 0.5]), np.array([1.0, -4.5, 0.0]))
    assert abs_err == 0.5 and rel_err == 0.5 / 4.5


def test_error_of_zero_tensors_nan_and_mismatched_shapes():
    assert errors(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert errors(np.array([1e-300]), np.zeros(1))[1] == float("inf")
    assert errors(np.array([np.nan]), np.array([1.0])) == (float("inf"), float("inf"))
    assert errors(np.zeros(3), np.zeros(4)) == (float("inf"), float("inf"))


def test_twins_start_from_bit_identical_weights():
    params, _, net = twins((784, 128, 64, 10), "float64", np.random.default_rng(0))
    for name, p in parameters_by_scratch_name(net).items():
        assert p.dtype == torch.float64 and np.array_equal(params[name], p.detach().numpy()), name


# ----------------------------------------------------------------------------- the targets on MNIST


def test_one_mnist_batch_agrees_within_1e13_in_float64_and_1e5_in_float32(mnist, one_thread):
    (X, y), _ = mnist
    for dtype, tolerance in [("float64", tolerances.F64_ONE_BATCH), ("float32", tolerances.F32_ONE_BATCH)]:
        params, _, net = twins((784, 128, 64, 10), dtype, np.random.default_rng(0))
        records = compare_one_batch(params, net, X[:64].astype(dtype), y[:64], tolerance)
        assert [r.name for r in records] == ["logits", "loss", "dW1", "db1", "dW2", "db2", "dW3", "db3", "dX"]
        assert all(r.ok and r.tolerance == tolerance for r in records), [vars(r) for r in records if not r.ok]


def test_full_float64_epoch_keeps_every_weight_and_loss_within_1e12_and_every_prediction(mnist):
    (result,) = run(Config(dtypes=("float64",)), mnist)
    assert result.steps == 938 and result.ok, [vars(r) for r in result.records if not r.ok]
    trained = [r for r in result.records if r.check == "938 SGD steps"]
    assert [r.name for r in trained] == ["W1", "b1", "W2", "b2", "W3", "b3", "loss (every step)"]
    assert all(r.max_rel_err <= tolerances.F64_TRAINING for r in trained)
    (predictions,) = [r for r in result.records if r.name == "predictions differing"]
    assert predictions.shape == (10000,) and predictions.max_abs_err == 0
    assert result.accuracy["scratch"] == result.accuracy["torch"]
    assert [d["step"] for d in result.drift] == [100, 200, 300, 400, 500, 600, 700, 800, 900, 938]


# ----------------------------------------------------------------------------- a wrong formula fails


def test_relu_mask_on_the_wrong_side_fails_naming_every_tensor_below_the_first_relu(mnist, monkeypatch):
    swap_in(monkeypatch, "relu_backward", relu_mask_on_the_wrong_side)
    (result,) = run(Config(steps=5, dtypes=("float64",)), mnist)
    one_batch = [r for r in result.records if r.check == "one batch"]
    # logits, loss and the last layer's gradients come before any ReLU backward: still exact
    assert failing_names(one_batch) == {"dW1", "db1", "dW2", "db2", "dX"}
    assert {"W1", "b1", "W2", "b2"} <= failing_names(result.records) and not result.ok


def test_bias_gradient_summed_over_the_wrong_axis_fails_naming_every_bias(mnist, monkeypatch):
    swap_in(monkeypatch, "linear_backward", bias_gradient_over_the_wrong_axis)
    (result,) = run(Config(steps=5, dtypes=("float64",)), mnist)
    one_batch = {r.name: r for r in result.records if r.check == "one batch"}
    assert failing_names(one_batch.values()) == {"db1", "db2", "db3"}
    assert "shape mismatch" in one_batch["db1"].note  # (64,) against torch's (128,)
    (training,) = [r for r in result.records if r.name == "raised"]  # SGD cannot even apply it
    assert not training.ok and "raised" in training.note


def test_a_backward_that_raises_is_reported_as_a_failure_not_a_crash(mnist, monkeypatch):
    swap_in(monkeypatch, "relu_backward", lambda dout, x: dout[:, :1])  # drops all but one unit
    (result,) = run(Config(steps=5, dtypes=("float64",)), mnist)
    raised = [r for r in result.records if r.name == "raised"]
    assert [r.check for r in raised] == ["one batch", "5 SGD steps"] and not result.ok
    assert all("ValueError" in r.note for r in raised)


def test_a_failing_tensor_makes_the_program_exit_1_with_ok_false(monkeypatch, capsys):
    swap_in(monkeypatch, "relu_backward", relu_mask_on_the_wrong_side)
    status = main(["--steps", "5", "--limit", "640", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and report["ok"] is False
    failed = {(r["dtype"], r["name"]) for r in report["records"] if not r["ok"]}
    assert ("float64", "dW1") in failed and ("float32", "dX") in failed


# ----------------------------------------------------------------------------- the program


def run_program(*flags):
    return subprocess.run([sys.executable, "-m", "parity", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_python_m_parity_json_is_one_object_with_ok_config_and_records():
    done = run_program("--json", "--limit", "2000", "--steps", "50")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # exactly one JSON document on stdout
    assert report["ok"] is True
    assert report["config"]["layer_sizes"] == [784, 128, 64, 10] and report["config"]["steps"] == 50
    assert report["config"]["dtypes"] == ["float64", "float32"] and report["config"]["lr"] == 0.5
    for record in report["records"]:
        assert {"name", "dtype", "shape", "max_abs_err", "max_rel_err", "tolerance", "ok"} <= set(record)
        assert isinstance(record["ok"], bool) and isinstance(record["max_rel_err"], float)
    float32 = [r for r in report["records"] if r["dtype"] == "float32"]
    assert all(r["ok"] for r in float32 if r["check"] == "one batch")
    assert {r["name"] for r in float32 if r["tolerance"] is None} >= {"W1", "b3"}  # drift: reported
    assert set(report["accuracy"]["float32"]) == {"scratch", "torch"}


def test_python_m_parity_prints_a_table_per_dtype_and_a_one_line_summary():
    done = run_program("--limit", "1280", "--steps", "20", "--dtype", "float64")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-1].startswith("parity PASS: ") and "float32" not in lines[-1]
    assert any(line.startswith("float64 (TF32 off)") for line in lines)
    assert any("max rel err" in line and "tolerance" in line for line in lines)


@pytest.mark.parametrize("flags, message", [
    (["--limit", "100000"], "exceeds the 60000 training images"),
    (["--data-dir", "/nonexistent"], "does not exist"),
    (["--batchnorm", "--batch-size", "1"], "batch norm in training mode needs batches of 2 or more"),
    (["--batchnorm", "--limit", "129"], "leaves a batch of 1"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_status_2(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, PROG, flags)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"{PROG}: error: ") and message in err
