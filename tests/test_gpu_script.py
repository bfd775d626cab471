"""Tests of the GPU run's CPU side: benchmarks/gpu-run.sh and the three CUDA risks it depends on.

The script itself only runs on a CUDA machine. Here: its syntax (bash -n), its one-line refusal
without a CUDA device, its plan (--plan: the stages in order, within about 8 minutes, every
command one that exists and every flag one its parser accepts), and its stage loop with a stand-in
interpreter, which shows that a failed stage does not stop the next and fails the run. Then the
risks: a CUDA device index past the device count is refused in one line, the TF32 flags are set
through one API and read back without torch refusing the read, and SGD(fused=True) is asked for
only where this torch's SGD takes it.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import backends, machine
from benchmarks.__main__ import build_parser
from benchmarks.backends import TorchResidentBackend, sgd_options, sgd_variant
from benchmarks.runner import BACKENDS, CUDA_BACKENDS
from common.errors import InputError
from scratch.toolbox.model import init_params

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu-run.sh"
STAGES = ["driver", "versions", "quick", "bench-tests", "tests", "peers", "sweep"]
BUDGET_S = 8.5 * 60  # "about 8 minutes": the stages' time limits together


def gpu_run(*args, env=None, cwd=ROOT):
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan") / "out"
    done = gpu_run(str(out), "--plan")
    assert done.returncode == 0, done.stderr
    assert not out.exists()  # a plan writes nothing
    stages = {}
    for line in done.stdout.splitlines():
        name, seconds, command = line.split("\t")
        stages[name] = (int(seconds), shlex.split(command))
    return out, stages


# ----------------------------------------------------------------------------- the script


def test_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_without_a_cuda_device_it_refuses_in_one_line_and_writes_nothing(tmp_path):
    done = gpu_run(str(tmp_path / "out"), env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU, even on one
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("gpu-run.sh: error: no CUDA device is visible: ")
    assert machine.cuda_note() is None or machine.cuda_note() in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_missing_or_wrong_out_dir_is_refused(tmp_path):
    done = gpu_run()
    assert done.returncode == 2 and "name the folder" in done.stderr
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    done = gpu_run(str(a_file))
    assert done.returncode == 2 and "is not a folder" in done.stderr
    assert a_file.read_text() == "keep me"
    done = gpu_run(str(tmp_path), "--fast")
    assert done.returncode == 2 and "unknown option --fast" in done.stderr


def test_plan_runs_the_stages_in_order_within_about_eight_minutes(plan):
    _, stages = plan
    assert list(stages) == STAGES
    assert sum(seconds for seconds, _ in stages.values()) <= BUDGET_S


def test_plan_benchmark_commands_are_accepted_by_the_parser(plan):
    out, stages = plan
    for name in ("quick", "peers", "sweep"):
        command = stages[name][1]
        assert command[:3] == [sys.executable, "-m", "benchmarks"], command
        args = build_parser().parse_args(command[3:])  # exits (SystemExit) on a flag it refuses
        if name != "quick":
            assert Path(args.out) == out  # JSON, report and figures in OUT_DIR
            assert set(args.backends) <= set(BACKENDS)
    sweep = build_parser().parse_args(stages["sweep"][1][3:])
    assert sweep.sweep and sweep.backends[0] == "numpy"
    assert set(sweep.backends[1:]) <= set(CUDA_BACKENDS)  # NumPy and CUDA rows only
    peers = build_parser().parse_args(stages["peers"][1][3:])
    assert {"sklearn", "torch-cpu-compiled", "torch-cuda-compiled"} <= set(peers.backends)
    quick = build_parser().parse_args(stages["quick"][1][3:])
    assert quick.quick and quick.json and quick.no_save  # its JSON goes to OUT_DIR/quick.json
    assert quick.backends == [name for name in BACKENDS if not name.endswith("-compiled")]


def test_plan_test_commands_collect_cuda_tests_that_exist(plan):
    _, stages = plan
    for name in ("bench-tests", "tests"):
        command = stages[name][1]
        assert command[:3] == [sys.executable, "-m", "pytest"]
        paths = [word for word in command if word.endswith(".py")]
        assert paths and all((ROOT / p).is_file() for p in paths), paths
    bench = stages["bench-tests"][1]
    collected = subprocess.run([*bench[:3], "--collect-only", *bench[3:]], cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    cases = [line for line in collected.stdout.splitlines() if "::" in line]
    assert cases and all("cuda" in case for case in cases), collected.stdout


def test_versions_stage_prints_the_stack_and_the_devices(plan):
    _, stages = plan
    done = subprocess.run(stages["versions"][1], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"torch {torch.__version__}" in done.stdout and "numpy " in done.stdout
    assert ("cuda:0 " in done.stdout) == torch.cuda.is_available()


def test_stages_run_on_past_a_failure_and_the_run_fails(tmp_path):
    """A stand-in interpreter: the CUDA check passes, the quick run prints JSON and progress, the
    pytest-benchmark stage fails; every stage still runs and the exit status says one failed."""
    fake = tmp_path / "python"
    fake.write_text("#!/usr/bin/env bash\n"
                    "case \"$*\" in\n"
                    "  -c*) echo ;;\n"
                    "  *--quick*) echo '{\"results\": []}'; echo progress >&2 ;;\n"
                    "  *test_bench.py*) echo 'bench failed'; exit 3 ;;\n"
                    "  *) echo \"ran $*\" ;;\n"
                    "esac\n")
    fake.chmod(0o755)
    out = tmp_path / "out"
    done = gpu_run(str(out), env={"PYTHON": str(fake), "PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip().endswith("1 stage(s) failed: bench-tests (see " + str(out / "gpu-run.log") + ")")
    log = (out / "gpu-run.log").read_text()
    assert [line.split()[1] for line in log.splitlines() if line.startswith("=== ") and "(at most" in line] == STAGES
    assert "=== bench-tests: FAILED: exit status 3" in log and "=== sweep: passed" in log
    assert json.loads((out / "quick.json").read_text()) == {"results": []}  # stdout only
    assert "progress" in log and "ran -m benchmarks --sweep" in log


# ----------------------------------------------------------------------------- the CUDA risks


def test_a_cuda_index_past_the_device_count_is_refused_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert machine.check_device("cuda:0") == torch.device("cuda:0")
    assert machine.check_device("cuda") == torch.device("cuda")
    with pytest.raises(InputError, match=r"'cuda:1' asked for but this machine has 1 CUDA device\(s\), "
                                         r"cuda:0 to cuda:0") as err:
        machine.check_device("cuda:1")
    assert "\n" not in str(err.value)
    params = init_params([8, 4, 2], np.random.default_rng(0))
    X, y = np.zeros((16, 8), np.float32), np.zeros(16, np.int64)
    with pytest.raises(InputError, match="cuda:3"):  # the backends refuse it before touching CUDA
        TorchResidentBackend(X, y, params, 8, 0.5, 0, "cuda:3")


def test_cuda_and_unknown_devices_are_refused_where_there_is_none():
    with pytest.raises(InputError, match="unknown device 'gpu7'"):
        machine.check_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="use cpu"):
            machine.check_device("cuda")
    assert machine.check_device("cpu") == torch.device("cpu")


def test_tf32_is_pinned_through_one_api_and_every_flag_reads_back():
    """In a fresh process: another library turns TF32 on through torch 2.9's new API, which makes
    the legacy flag unreadable; pin_float32 then leaves one consistent, readable IEEE state."""
    code = ("import json, torch; from benchmarks import machine\n"
            "new = hasattr(torch.backends, 'fp32_precision')\n"
            "if new: torch.backends.fp32_precision = 'tf32'\n"
            "before = machine.tf32_state(); machine.pin_float32()\n"
            "print(json.dumps({'new': new, 'before': before, 'after': machine.tf32_state()}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    after = state["after"]
    assert after["set"] == "torch.set_float32_matmul_precision('highest')"
    assert after["cuda_matmul_allow_tf32"] is False and after["float32_matmul_precision"] == "highest"
    assert not any(str(value).startswith("unreadable") for value in after.values()), after
    if state["new"]:
        assert after["cuda_matmul_fp32_precision"] == "ieee"
        assert str(state["before"]["cuda_matmul_allow_tf32"]).startswith("unreadable: ")


def test_fused_sgd_is_asked_for_only_where_this_torch_has_it(monkeypatch):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.setattr(backends, "SGD_HAS_FUSED", False)  # torch 2.1's SGD has no fused argument
    assert sgd_options(cuda, fused=True) == {}
    monkeypatch.setattr(backends, "SGD_HAS_FUSED", True)
    assert sgd_options(cuda, fused=True) == {"fused": True}
    assert sgd_options(cpu, fused=True) == {} and sgd_options(cuda, fused=False) == {}
    weight = [torch.nn.Parameter(torch.zeros(2))]
    assert sgd_variant(torch.optim.SGD(weight, lr=0.1)) == "for-loop"  # torch's default on the CPU
    assert sgd_variant(torch.optim.SGD(weight, lr=0.1, foreach=True)) == "foreach"
