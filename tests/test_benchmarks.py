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

from benchmarks import phases, runner
from benchmarks.__main__ import main
from benchmarks.backends import NumpyBackend, TorchResidentBackend
from benchmarks.references import NumpyMinimalBackend, NumpyToolboxBackend
from benchmarks.report import format_table, markdown_report, write_report
from benchmarks.targets import evaluate_targets
from common.errors import InputError
from common.machine import available_cpus
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
    assert names[0] == "numpy"
    assert {"numpy-minimal", "numpy-toolbox", "torch-cpu", "torch-cpu-resident", "sklearn"} <= set(names)
    cuda = [n for n in names if "cuda" in n]
    compiled = {n for n in runner.BACKENDS if n.endswith("-compiled")}  # --quick leaves them out
    assert not compiled & set(names) and compiled <= set(quick_run["run"]["not_measured"])
    if torch.cuda.is_available():
        assert cuda == [n for n in runner.CUDA_BACKENDS if n not in compiled]
        assert quick_run["machine"]["gpu"]
    else:
        assert cuda == []
        assert quick_run["machine"]["gpu"] is None
        assert set(quick_run["run"]["not_measured"]) == set(runner.CUDA_BACKENDS) | compiled


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


def test_several_batch_sizes_are_configurations_of_one_run():
    from benchmarks.__main__ import build_parser, configurations

    args = build_parser().parse_args(["--batch-size", "64", "256", "64", "--limit", "512"])
    assert configurations(args) == [([128, 64], 64, 512), ([128, 64], 256, 512)]


def test_more_threads_than_cpus_are_refused_before_any_work(capsys):
    with pytest.raises(InputError, match=f"--threads 100000 exceeds the {available_cpus()} CPUs"):
        main(["--threads", "100000", "--quick", "--no-save"])
    assert capsys.readouterr().err == ""  # refused before the first log line


@pytest.mark.parametrize("flags, words", [(["--threads", "100000"], "exceeds the"),
                                          (["--hidden", "1000000000"], "needs 2.89 TiB for its float32 parameters")])
def test_the_gap_script_and_the_benchmarks_refuse_what_this_machine_cannot_run(flags, words):
    from benchmarks import gap

    for program in (gap.main, main):
        with pytest.raises(InputError, match=words):
            program([*flags, "--no-save"] if program is main else flags)


def test_an_out_that_is_a_file_is_refused_before_any_work_and_kept(tmp_path, capsys):
    existing = tmp_path / "results.md"
    existing.write_bytes(b"the old report")
    with pytest.raises(InputError, match="is a file: give a folder"):
        main(["--quick", "--out", str(existing)])
    assert existing.read_bytes() == b"the old report" and capsys.readouterr().err == ""


@pytest.mark.parametrize("flags, words", [(["--seed", "-1"], "from 0 to 4294967295"),
                                          (["--seed", "18446744073709551616"], "from 0 to 4294967295"),
                                          (["--threads", "0"], "positive whole number")])
def test_bad_values_are_one_line_and_exit_2(flags, words):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--no-save", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and words in lines[0], done.stderr


# ----------------------------------------------------------------------------- the report


def fake_record(backend, hidden, batch, median, **extra):
    device = "cuda" if "cuda" in backend else "cpu"
    return {"backend": backend, "device": device, "batch_size": batch, "hidden": hidden, "images": 60000,
            "steps": math.ceil(60000 / batch), "runs": 3, "median_s": median, "min_s": 0.9 * median,
            "max_s": 1.1 * median, "final_loss": 0.06, "loss_rel_diff": 0.01, "loss_ok": True,
            "step_check": {"steps": 3, "loss_rel_err": 1e-7, "param_rel_err": 1e-8, "rtol": 1e-5, "ok": True},
            **extra}


def fake_profile(epoch, left_share, ops=None):
    """A profile whose phases take (1 - left_share) of `epoch`, in fixed proportions."""
    shares = dict(zip(phases.PHASES, (0.05, 0.3, 0.2, 0.1, 0.25, 0.1)))
    profile = {"images": 6400, "method": "fake", "left_s": left_share * epoch,
               "phases_s": {name: share * (1 - left_share) * epoch for name, share in shares.items()}}
    if ops is not None:
        profile.update(ops_per_step=ops, optimizer_ops_per_step=6, kernels_per_step=None,
                       cuda_launches_per_step=ops - 5, launch_us=[5.0, 10.0],
                       cuda_prediction_s=phases.launch_prediction(ops - 5, 938))
    return profile


def fake_data(cuda):
    """Two widths x two batch sizes; numpy is 1.1x its floor, resident 1.4x numpy (not met);
    at 128-64 batch 64 numpy is 1.02x numpy-minimal, numpy-toolbox 1.2x numpy (not met), sklearn
    2x numpy."""
    results = []
    for hidden, cost in (([128, 64], 1.0), ([4096, 4096], 200.0)):
        for batch, eff in ((64, 1.0), (1024, 0.5)):
            numpy = 0.5 * cost * eff
            results.append(fake_record("numpy", hidden, batch, numpy, floor_s=numpy / 1.1,
                                       floor_products=runner.floor_products([784, *hidden, 10]),
                                       profile=fake_profile(numpy, 0.2)))
            if hidden == [128, 64] and batch == 64:
                results.append(fake_record("numpy-minimal", hidden, batch, numpy / 1.02,
                                           profile=fake_profile(numpy / 1.02, 0.18)))
                results.append(fake_record("numpy-toolbox", hidden, batch, 1.2 * numpy,
                                           profile=fake_profile(1.2 * numpy, 0.33)))
                results.append(fake_record("sklearn", hidden, batch, 2 * numpy,
                                           profile={"skipped": "sklearn offers no per-phase profile"}))
            results.append(fake_record("torch-cpu", hidden, batch, 2 * numpy, loader_s=0.6))
            scaled = {"images": 4096, "scaled_from": 4096} if hidden[0] == 4096 else {}
            results.append(fake_record("torch-cpu-resident", hidden, batch, 1.4 * numpy,
                                       profile=fake_profile(1.4 * numpy, 0.5, ops=38), **scaled))
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
    assert names == ["fake-batch.png", "fake-profile.png", "fake-speedup.png", "fake-width.png", "fake.json", "fake.md"]
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
    assert {p.name for p in paths} == {"cpu.json", "cpu.md", "cpu-batch.png", "cpu-width.png", "cpu-profile.png"}
    md = (tmp_path / "cpu.md").read_text()
    assert "GPU over NumPy: not drawn: no GPU was measured (torch 2.13.0+cpu is a build without CUDA" in md
    assert (f"Not measured: {', '.join(runner.CUDA_BACKENDS)}: "
            "torch 2.13.0+cpu is a build without CUDA support.") in md
    assert "torch-cuda-graph |" not in md.split("## Correctness")[0]
    assert "**Caution**: the 1-minute load average was 3.1" in md


def targets_by_name(data):
    """{a short key: target} for the targets of a run."""
    keys = {"minimal loop": "minimal", "1.5x its matmul floor": "floor", "batch 256 and above": "floor-large",
            "configurable network": "toolbox", "scikit-learn": "sklearn", "faster than torch-cpu": "torch-cpu",
            "torch-cpu-resident within": "resident", "torch-cuda-resident at most": "cuda-resident",
            "torch-cuda-graph at most": "graph", "launch-bound prediction": "prediction", "100x": "wide"}
    found = {}
    for target in evaluate_targets(data):
        key = next(k for text, k in keys.items() if text in target["target"])
        found[key] = target
    assert len(found) == len(keys)
    return found


def test_targets_are_judged_from_the_measured_records():
    targets = targets_by_name(fake_data(cuda=True))
    # numpy 1.02x minimal; 1.1x floor at every batch; toolbox 1.2x numpy; sklearn 2x numpy; numpy
    # 2x faster than torch-cpu; resident 1.4x numpy; cuda-resident 0.2 s; graph 0.08 s; predicted
    # 33 launches x 938 steps x 5-10 µs = 0.155-0.31 s against 0.2 s measured; at 4096-4096 batch
    # 1024 numpy 50 s over the graph's 0.57 s = 88x.
    verdicts = {key: t["verdict"] for key, t in targets.items()}
    assert verdicts == {"minimal": "met", "floor": "met", "floor-large": "met", "toolbox": "not met",
                        "sklearn": "met", "torch-cpu": "met", "resident": "not met", "cuda-resident": "met",
                        "graph": "not met", "prediction": "met", "wide": "not met"}
    assert "1 BLAS thread" not in targets["floor"]["target"] and "2 BLAS threads" in targets["floor"]["target"]
    assert "(8 products)" in targets["floor"]["measured"]
    assert "elementwise" in targets["floor"]["explanation"] and "left (Python calls)" in targets["floor"]["explanation"]
    assert "same measured phases" in targets["toolbox"]["explanation"]
    assert "µs per step" in targets["resident"]["explanation"] and "38 operators" in targets["resident"]["explanation"]
    assert "GFLOP/s" in targets["wide"]["explanation"]


def test_targets_out_of_reach_show_their_bound_and_the_prediction_is_checked_against_the_gpu():
    data = fake_data(cuda=True)
    numpy = next(r for r in data["results"] if r["backend"] == "numpy" and r["batch_size"] == 64
                 and r["hidden"] == [128, 64])
    numpy["median_s"] = 2 * numpy["floor_s"]  # now 2x its floor, and 1.96x the minimal loop
    cuda = next(r for r in data["results"] if r["backend"] == "torch-cuda-resident" and r["batch_size"] == 64
                and r["hidden"] == [128, 64])
    cuda["median_s"] = 0.5  # predicted 0.155-0.31 s: 2.2x the middle
    targets = targets_by_name(data)
    assert targets["floor"]["verdict"] == targets["minimal"]["verdict"] == "not met"
    assert "2.00x" in targets["floor"]["measured"] and "outside the products" in targets["floor"]["explanation"]
    assert targets["prediction"]["verdict"] == "not met" and "33 launches" in targets["prediction"]["explanation"]


def test_targets_without_records_are_not_measured_with_the_reason():
    targets = targets_by_name(fake_data(cuda=False))
    for key in ("cuda-resident", "graph", "prediction", "wide"):
        assert targets[key]["verdict"] == "not measured", key
    assert all("CUDA not measured" in targets[k]["measured"] for k in ("cuda-resident", "graph", "prediction"))
    data = fake_data(cuda=False)
    data["results"] = [r for r in data["results"] if r["backend"] != "sklearn"]
    assert targets_by_name(data)["sklearn"]["verdict"] == "not measured"
    assert "no sklearn record" in targets_by_name(data)["sklearn"]["measured"]
    data["results"] = [r for r in data["results"] if r["hidden"] != [128, 64]]
    targets = targets_by_name(data)
    for key in ("minimal", "floor", "toolbox", "torch-cpu", "resident"):
        assert targets[key]["verdict"] == "not measured", key


def test_one_configuration_draws_no_curves_and_the_table_still_prints(tmp_path):
    data = fake_data(cuda=False)
    data["results"] = [r for r in data["results"] if r["hidden"] == [128, 64] and r["batch_size"] == 64]
    paths = write_report(data, tmp_path, "one")
    assert sorted(p.name for p in paths) == ["one-profile.png", "one.json", "one.md"]  # no curves
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


# ----------------------------------------------------------------------------- the floor, the profile, divergence


def test_the_floor_counts_the_products_a_training_step_needs():
    products = runner.floor_products([784, 128, 64, 10])
    # 3 layers x (forward, dW, dx) = 9, less the first layer's dx, the images' gradient
    assert len(products) == 8 and len(set(products)) == 8
    assert "dz1 @ W1" not in products and {"h0 @ W1.T", "dz1.T @ h0", "dz2 @ W2"} <= set(products)
    assert len(runner.floor_products([784, 10])) == 2  # one layer: forward and dW only


def test_the_numpy_profile_times_the_cores_own_arithmetic(small_mnist):
    X, y = small_mnist
    params = init_params([784, 32, 16, 10], np.random.default_rng(2))
    spent, trained = phases.numpy_phases(X, y, params, 64, 0.5, 3)
    core = NumpyBackend(X, y, params, 64, 0.5, 3)
    core.epoch()
    for name, value in core.get_params().items():  # the same steps on the same batches, bit for bit
        np.testing.assert_array_equal(trained[name], value, err_msg=name)
    assert set(spent) == set(phases.PHASES) and all(seconds > 0 for seconds in spent.values())


def test_the_reference_loops_take_the_cores_steps_exactly(small_mnist):
    X, y = small_mnist
    params = init_params([784, 32, 16, 10], np.random.default_rng(4))
    batches = runner.check_batches(len(X), 64)
    reference = runner.run_steps(NumpyBackend(X, y, params, 64, 0.5, 0), batches)
    for cls in (NumpyMinimalBackend, NumpyToolboxBackend):
        check = runner.step_check(cls(X, y, params, 64, 0.5, 0), batches, reference, cls.name, 0.5)
        assert check["loss_rel_err"] == 0 and check["param_rel_err"] == 0, cls.name


def test_torch_operators_fall_into_their_phases():
    assert phases.phase_of("aten::addmm", "aten::linear") == "forward products"
    assert phases.phase_of("aten::mm", "autograd::engine::evaluate_function: AddmmBackward0") == "backward products"
    assert phases.phase_of("aten::threshold_backward", "autograd::engine::evaluate_function: ReluBackward0") \
        == "elementwise"
    assert phases.phase_of("aten::add_", "Optimizer.step#SGD.step") == "optimizer"
    assert phases.phase_of("aten::nll_loss_backward", "autograd::engine::evaluate_function: NllLossBackward0") \
        == "loss"
    assert phases.phase_of("aten::stack", "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__") == "gather"
    assert phases.phase_of("aten::t", "aten::linear") is None  # a view: dispatch, counted in left


def test_every_timed_record_carries_a_profile_whose_phases_and_left_make_its_epoch(small_mnist):
    X, y = small_mnist
    records = runner.run_config(X, y, [16], 64, ["numpy", "numpy-minimal", "torch-cpu-resident"], 1,
                                log=lambda line: None)
    for record in records:
        profile = record["profile"]
        assert profile["images"] == 128  # a quarter of the 512 images, whole batches
        assert sum(profile["phases_s"].values()) + profile["left_s"] == pytest.approx(record["median_s"])
        assert profile["phases_s"]["forward products"] > 0 and profile["phases_s"]["backward products"] > 0
    numpy, minimal, resident = records
    assert numpy["profile"]["phases_s"] == minimal["profile"]["phases_s"]  # the same arithmetic, measured once
    # one step: 2 index_select, 2 addmm (+ 2 bias copies), 1 relu, 3 mm, ...: a few dozen operators,
    # of which 4 in-place SGD updates (one per parameter); on CUDA those are one fused launch
    assert 15 <= resident["profile"]["ops_per_step"] <= 60
    assert resident["profile"]["optimizer_ops_per_step"] == 4
    assert resident["profile"]["cuda_launches_per_step"] == resident["profile"]["ops_per_step"] - 3
    low, high = resident["profile"]["cuda_prediction_s"]
    steps = math.ceil(runner.FULL_EPOCH / 64)
    assert low == pytest.approx(resident["profile"]["cuda_launches_per_step"] * steps * 5e-6) and high == 2 * low


def test_report_carries_the_profile_table_the_prediction_and_the_figure(tmp_path):
    write_report(fake_data(cuda=False), tmp_path, "prof")
    md = (tmp_path / "prof.md").read_text()
    section = md.split("## Where the time goes")[1].split("## The textbook")[0]
    assert "| backend | batch | width | epoch s | gather | forward products | elementwise | loss |" in section
    assert "| numpy-toolbox | 64 | 128-64 | 0.6 |" in section
    assert "sklearn offers no per-phase profile" in section
    assert "**prediction, not a measurement**" in section and "0.155-0.310 s (33 launches)" in section
    assert "![Where the time goes](prof-profile.png)" in section
    assert "- numpy at 4096-4096, batch 64: 1.10x its floor" in section  # the wide networks' gap, from the profile
    assert (tmp_path / "prof-profile.png").read_bytes()[:8] == PNG_MAGIC
    assert "The matmul floor counts the 8 products a training step needs" in md


def test_a_diverging_run_is_reported_as_diverged_and_not_timed(small_mnist):
    X, y = small_mnist
    records = runner.run_config(X, y, [16], 64, ["numpy", "torch-cpu-resident"], 1, lr=1e30,
                                log=lambda line: None)
    for record in records:
        assert "median_s" not in record and "profile" not in record
        assert "the run diverged: numpy's loss is" in record["error"] and "at step" in record["error"]
        assert "lower --lr" in record["error"] and "step check failed" not in record["error"]


class DivergingBackend(NumpyBackend):
    """NumPy's step whose second loss is not finite, and whose epochs end in a nan loss."""

    def step(self, idx):
        self.calls = getattr(self, "calls", 0) + 1
        return math.nan if self.calls == 2 else super().step(idx)

    def epoch_loss(self):
        return math.nan


def test_a_backend_that_diverges_alone_is_named_with_its_step(small_mnist):
    X, y = small_mnist
    params = init_params([784, 16, 10], np.random.default_rng(0))
    batches = runner.check_batches(len(X), 64)
    reference = runner.run_steps(NumpyBackend(X, y, params, 64, 0.5, 0), batches)
    with pytest.raises(runner.Diverged, match="the run diverged: odd's loss is nan at step 2 of the step check"):
        runner.step_check(DivergingBackend(X, y, params, 64, 0.5, 0), batches, reference, "odd", 0.5)
    with pytest.raises(runner.Diverged, match="odd's mean loss over its warm-up epoch is nan"):
        runner.time_epochs(DivergingBackend(X, y, params, 64, 0.5, 0), 1, "odd")


def test_a_sweep_runs_the_reference_loops_on_the_default_network_only(monkeypatch):
    import benchmarks.__main__ as program

    asked = {}
    monkeypatch.setattr(program, "run_config", lambda X, y, hidden, batch, names, runs, **kw:
                        asked.setdefault(tuple(hidden), set()).update(names) or [])
    assert program.main(["--sweep", "--no-save", "--limit", "64", "--backends", "numpy", "numpy-minimal"]) == 0
    assert asked and all(names == {"numpy", "numpy-minimal"} for names in asked.values())  # asked for by name
    asked.clear()
    assert program.main(["--sweep", "--no-save", "--limit", "64"]) == 0
    assert {"numpy-minimal", "numpy-toolbox"} <= asked[(128, 64)]
    assert all(not names & {"numpy-minimal", "numpy-toolbox"} and "numpy" in names
               for hidden, names in asked.items() if hidden != (128, 64))


def test_the_gap_script_prints_the_epoch_the_floor_the_phases_and_the_update(capsys):
    from benchmarks import gap

    assert gap.main(["--hidden", "32", "32", "--images", "256"]) == 0
    out = capsys.readouterr().out
    assert "32-32, batch 64, 256 images (4 steps), 1 BLAS thread(s)" in out
    assert "matmul floor" in out and "optimizer" in out and "p -= lr * g" in out
