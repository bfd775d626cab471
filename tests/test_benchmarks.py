"""Tests of `python -m benchmarks`: the quick run's JSON, the checks, and the report writer.

The timing itself is exercised by `pytest benchmarks/` (pytest-benchmark), which is not part of
this suite. Here: one real quick run as a subprocess, the step check on a deliberately wrong
backend, and the report, targets and figures written from a small fake result set.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import runner
from benchmarks.__main__ import main
from benchmarks.backends import NumpyBackend, TorchResidentBackend
from benchmarks.report import format_table, markdown_report, write_report
from benchmarks.targets import evaluate_targets
from common.errors import InputError
from scratch.data import load_mnist
from scratch.toolbox.model import init_params

ROOT = Path(__file__).resolve().parent.parent
RECORD_FIELDS = {"backend", "device", "batch_size", "hidden", "median_s", "min_s", "max_s", "runs", "final_loss"}
MACHINE_FIELDS = {"cpu", "cores", "gpu", "python", "numpy", "torch", "threads", "tf32"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ----------------------------------------------------------------------------- the quick run


@pytest.fixture(scope="module")
def quick_run():
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json", "--no-save"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_quick_run_prints_one_json_object_with_machine_and_results(quick_run):
    assert set(quick_run) >= {"machine", "results"}
    assert MACHINE_FIELDS <= set(quick_run["machine"])
    assert quick_run["machine"]["threads"]["torch"] >= 1
    assert quick_run["machine"]["threads"]["numpy_blas"] >= 1
    assert quick_run["machine"]["tf32"]["cuda_matmul_allow_tf32"] is False
    for record in quick_run["results"]:
        assert RECORD_FIELDS <= set(record), record
        assert record["hidden"] == [128, 64] and record["batch_size"] == 64 and record["runs"] == 1
        assert 0 < record["min_s"] <= record["median_s"] <= record["max_s"]


def test_quick_run_measures_cuda_backends_only_where_cuda_is_available(quick_run):
    names = [r["backend"] for r in quick_run["results"]]
    assert names[:3] == ["numpy", "torch-cpu", "torch-cpu-resident"]
    cuda = [n for n in names if "cuda" in n]
    if torch.cuda.is_available():
        assert cuda == runner.CUDA_BACKENDS
        assert quick_run["machine"]["gpu"]
    else:
        assert cuda == []
        assert quick_run["machine"]["gpu"] is None
        assert set(quick_run["run"]["not_measured"]) == set(runner.CUDA_BACKENDS)


def test_quick_run_scales_its_short_epochs_to_60000_images(quick_run):
    for record in quick_run["results"]:
        assert record["images"] == record["scaled_from"] < runner.FULL_EPOCH
        scale = runner.FULL_EPOCH / record["images"]
        assert record["median_s"] == pytest.approx(record["raw_median_s"] * scale)
    numpy = quick_run["results"][0]
    assert numpy["floor_s"] > 0


def test_quick_run_every_backend_passes_the_step_check_and_agrees_with_numpy(quick_run):
    ref = quick_run["results"][0]["final_loss"]
    assert math.isfinite(ref) and 0 < ref < math.log(10)  # trained below chance level
    for record in quick_run["results"]:
        assert record["step_check"]["ok"], record
        assert record["step_check"]["loss_rel_err"] <= runner.STEP_LOSS_RTOL
        assert record["loss_ok"], record
        assert 1 / runner.LOSS_FACTOR <= record["final_loss"] / ref <= runner.LOSS_FACTOR


# ----------------------------------------------------------------------------- the checks


@pytest.fixture(scope="module")
def small_mnist():
    X, y = load_mnist()
    return X[:512], y[:512]


def test_step_check_passes_torch_and_fails_a_backend_with_the_wrong_learning_rate(small_mnist):
    X, y = small_mnist
    params = init_params([784, 32, 10], np.random.default_rng(0))
    batches = runner.check_batches(len(X), 64)
    reference = runner.run_steps(NumpyBackend(X, y, params, 64, 0.5, 0), batches)
    right = runner.step_check(TorchResidentBackend(X, y, params, 64, 0.5, 0), batches, reference)
    wrong = runner.step_check(TorchResidentBackend(X, y, params, 64, 0.25, 0), batches, reference)
    assert right["ok"] and right["loss_rel_err"] <= runner.STEP_LOSS_RTOL
    assert not wrong["ok"]
    assert wrong["loss_rel_err"] > 10 * runner.STEP_LOSS_RTOL
    assert wrong["param_rel_err"] > runner.STEP_PARAM_RTOL


def test_loss_check_accepts_batch_order_noise_and_fails_a_loop_that_does_not_train():
    records = [{"backend": "numpy", "final_loss": 0.3}, {"backend": "a", "final_loss": 0.4},
               {"backend": "b", "final_loss": 0.6}, {"backend": "c", "final_loss": math.nan},
               {"backend": "d", "final_loss": 2.3}, {"backend": "e", "final_loss": 0.1}]
    runner.check_losses(records)
    assert [r["loss_ok"] for r in records] == [True, True, False, False, False, False]
    assert records[1]["loss_rel_diff"] == pytest.approx(1 / 3) and records[3]["loss_rel_diff"] is None


def test_set_params_restores_the_shared_weights_in_place(small_mnist):
    X, y = small_mnist
    params = init_params([784, 16, 10], np.random.default_rng(1))
    backend = TorchResidentBackend(X, y, params, 32, 0.5, 0)
    storage = backend.model.net[0].weight.data_ptr()
    backend.epoch()
    backend.set_params(params)
    assert backend.model.net[0].weight.data_ptr() == storage
    for name, value in backend.get_params().items():
        np.testing.assert_array_equal(value, params[name])


def test_matmul_floor_times_one_epoch_of_products_per_run():
    seconds = runner.matmul_floor([784, 16, 10], 64, 200, runs=3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)


def test_sweep_refuses_a_network_of_its_own():
    with pytest.raises(InputError, match="--sweep"):
        main(["--sweep", "--hidden", "10", "--no-save"])


def test_limit_larger_than_mnist_is_refused():
    with pytest.raises(InputError, match="exceeds"):
        main(["--limit", "70000", "--no-save"])


# ----------------------------------------------------------------------------- the report


def fake_record(backend, hidden, batch, median, **extra):
    device = "cuda" if "cuda" in backend else "cpu"
    return {"backend": backend, "device": device, "batch_size": batch, "hidden": hidden, "images": 60000,
            "steps": math.ceil(60000 / batch), "runs": 3, "median_s": median, "min_s": 0.9 * median,
            "max_s": 1.1 * median, "final_loss": 0.06, "loss_rel_diff": 0.01, "loss_ok": True,
            "step_check": {"steps": 3, "loss_rel_err": 1e-7, "param_rel_err": 1e-8, "rtol": 1e-5, "ok": True},
            **extra}


def fake_data(cuda):
    """Two widths x two batch sizes; numpy is 1.1x its floor, resident 1.4x numpy (not met)."""
    results = []
    for hidden, cost in (([128, 64], 1.0), ([4096, 4096], 200.0)):
        for batch, eff in ((64, 1.0), (1024, 0.5)):
            numpy = 0.5 * cost * eff
            results.append(fake_record("numpy", hidden, batch, numpy, floor_s=numpy / 1.1))
            results.append(fake_record("torch-cpu", hidden, batch, 2 * numpy, loader_s=0.6))
            scaled = {"images": 4096, "scaled_from": 4096} if hidden[0] == 4096 else {}
            results.append(fake_record("torch-cpu-resident", hidden, batch, 1.4 * numpy, **scaled))
            if cuda:
                results.append(fake_record("torch-cuda-resident", hidden, batch, 0.2 * eff * cost ** 0.5))
                results.append(fake_record("torch-cuda-graph", hidden, batch, 0.08 * eff * cost ** 0.5))
    note = None if cuda else "torch 2.13.0+cpu is a build without CUDA support"
    machine = {"cpu": "Test CPU", "cores": 2, "cpus_available": 2, "gpu": "NVIDIA H100 80GB HBM3" if cuda else None,
               "cuda": "12.8" if cuda else None, "cuda_note": note, "platform": "Linux", "python": "3.11",
               "numpy": "2", "torch": "2.13", "threads": {"numpy_blas": 2, "torch": 2, "torch_interop": 2},
               "blas": [{"library": "openblas", "version": "0.3", "architecture": "Haswell", "threads": 2}],
               "tf32": {"cuda_matmul_allow_tf32": False, "cudnn_allow_tf32": False,
                        "float32_matmul_precision": "highest"}}
    run = {"mode": "sweep", "command": "python -m benchmarks --sweep", "lr": 0.5, "seed": 0, "runs": 3,
           "warmup_epochs": 1, "full_epoch": 60000, "step_check_steps": 3, "step_loss_rtol": 1e-5,
           "step_param_rtol": 5e-3, "loss_factor": 1.5,
           "not_measured": {} if cuda else {n: note for n in runner.CUDA_BACKENDS}}
    return {"machine": machine, "run": run, "results": results}


def test_write_report_with_cuda_writes_json_markdown_and_three_figures(tmp_path):
    data = fake_data(cuda=True)
    paths = write_report(data, tmp_path, "fake")
    names = sorted(p.name for p in paths)
    assert names == ["fake-batch.png", "fake-speedup.png", "fake-width.png", "fake.json", "fake.md"]
    for png in tmp_path.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert json.loads((tmp_path / "fake.json").read_text()) == data
    md = (tmp_path / "fake.md").read_text()
    assert "| backend | device | batch | width | median epoch s |" in md
    assert "![GPU over NumPy](fake-speedup.png)" in md
    assert "| torch-cuda-graph | cuda | 64 | 128-64 | 0.08 | 0.072-0.088 | 6.25 |" in md
    assert "30-60 s" in md and "5-10 s" in md and "2-3x faster" in md
    assert "4096-4096 on 4096 images" in md


def test_report_without_cuda_draws_no_gpu_figure_and_says_why(tmp_path):
    data = fake_data(cuda=False)
    data["run"]["load_average"] = {"before": 3.1, "after": 2.0}
    paths = write_report(data, tmp_path, "cpu")
    assert not (tmp_path / "cpu-speedup.png").exists()
    assert {p.name for p in paths} == {"cpu.json", "cpu.md", "cpu-batch.png", "cpu-width.png"}
    md = (tmp_path / "cpu.md").read_text()
    assert "GPU over NumPy: not drawn: no GPU was measured (torch 2.13.0+cpu is a build without CUDA" in md
    assert ("Not measured: torch-cuda, torch-cuda-resident, torch-cuda-graph: "
            "torch 2.13.0+cpu is a build without CUDA support.") in md
    assert "torch-cuda-graph |" not in md.split("## Correctness")[0]
    assert "**Caution**: the 1-minute load average was 3.1" in md


def test_targets_are_judged_from_the_measured_records():
    verdicts = [t["verdict"] for t in evaluate_targets(fake_data(cuda=True))]
    # numpy 1.1x floor; numpy 2x faster than torch-cpu; resident 1.4x numpy; cuda-resident 0.2 s;
    # graph 0.08 s; at 4096-4096 batch 1024 numpy 50 s over the graph's 0.57 s = 88x.
    assert verdicts == ["met", "met", "not met", "met", "not met", "not met"]
    explanations = [t["explanation"] for t in evaluate_targets(fake_data(cuda=True))]
    assert "µs per step" in explanations[2] and "GFLOP/s" in explanations[5]


def test_targets_without_records_are_not_measured_with_the_reason():
    targets = evaluate_targets(fake_data(cuda=False))
    assert [t["verdict"] for t in targets[3:]] == ["not measured"] * 3
    assert all("CUDA not measured" in t["measured"] for t in targets[3:5])
    data = fake_data(cuda=False)
    data["results"] = [r for r in data["results"] if r["hidden"] != [128, 64]]
    assert [t["verdict"] for t in evaluate_targets(data)[:3]] == ["not measured"] * 3


def test_one_configuration_draws_no_curves_and_the_table_still_prints(tmp_path):
    data = fake_data(cuda=False)
    data["results"] = [r for r in data["results"] if r["hidden"] == [128, 64] and r["batch_size"] == 64]
    paths = write_report(data, tmp_path, "one")
    assert sorted(p.name for p in paths) == ["one.json", "one.md"]
    md = markdown_report(data, {})
    assert "not drawn" in md
    table = format_table(data)
    assert table.splitlines()[0].startswith("backend") and "torch-cpu-resident" in table


def test_failed_backend_is_reported_not_timed():
    data = fake_data(cuda=False)
    data["results"].append({"backend": "torch-cpu", "device": "cpu", "batch_size": 256, "hidden": [128, 64],
                            "images": 60000, "runs": 3, "error": "RuntimeError: step check failed"})
    assert "failed" in format_table(data)
    assert "RuntimeError: step check failed" in markdown_report(data, {})
