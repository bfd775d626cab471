"""Both training programs as a user runs them: the same flags, the same lines, clear errors."""

import importlib
import json
import re
import subprocess
import sys

import pytest

PROGRAMS = ["scratch.train", "torchimpl.train"]
# One case per program, the torch twin's marked torch: pytest --without-torch runs scratch's (conftest.py).
EACH_PROGRAM = ["scratch.train", pytest.param("torchimpl.train", marks=pytest.mark.torch)]
EACH_CORE = ["scratch.mlp", pytest.param("torchimpl.mlp", marks=pytest.mark.torch)]
EPOCH_LINE = re.compile(r"^epoch 1/1  train loss (\S+)  train acc (\S+)  test acc (\S+)  (\S+)s$")


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_one_epoch_on_2000_images_prints_a_header_and_a_sane_epoch_line(module):
    result = run(module, "--epochs", "1", "--limit", "2000")
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.strip().splitlines()
    assert header.startswith(f"{module.split('.')[0]}: 784-128-64-10 relu, sgd lr 0.5, ce loss, batch 64, "
                             "float32, 2000 train / 10000 test images")
    loss, train_acc, test_acc, seconds = map(float, EPOCH_LINE.match(line).groups())
    assert 0 < loss < 2.3026  # below log(10), the loss of a uniform guess: it learned something
    assert 0.2 < train_acc <= 1 and 0.2 < test_acc <= 1  # at least twice chance after 32 steps
    assert seconds > 0


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_json_mode_prints_one_object_per_epoch_with_the_documented_keys(module):
    result = run(module, "--epochs", "2", "--limit", "500", "--batch-size", "100", "--hidden", "32",
                 "--dtype", "float64", "--seed", "3", "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(set(r) == {"epoch", "train_loss", "train_acc", "test_acc", "seconds"} for r in records)


@pytest.mark.parametrize("module", EACH_PROGRAM + EACH_CORE)
@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: must be a positive whole number, got 0"),
    (["--hidden", "128", "-5"], "argument --hidden: must be a positive whole number, got -5"),
    (["--hidden", "0"], "argument --hidden: must be a positive whole number, got 0"),
    (["--lr", "-1"], "argument --lr: must be a positive finite number"),
    (["--epochs", "x"], "argument --epochs: expected a whole number, got 'x'"),
    (["--limit", "70000"], "--limit 70000 exceeds the 60000 training images"),
    (["--data-dir", "/no/such/dir"], "data directory /no/such/dir does not exist"),
])
def test_bad_flags_give_one_clear_error_line_and_a_nonzero_exit(module, args, message):
    result = run(module, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_a_diverging_run_stops_at_the_first_non_finite_loss_with_a_hint(module):
    result = run(module, "--epochs", "3", "--limit", "1000", "--lr", "1e30")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: training stopped at epoch 1, step 2: the loss is nan; the run diverged, lower the "
        "learning rate (--lr) or check the inputs for extreme values")


TOOLBOX_RUNS = [
    ["--batchnorm", "--dropout", "0.2", "--optimizer", "adamw", "--weight-decay", "1e-4", "--schedule", "cosine"],
    ["--optimizer", "sgd", "--momentum", "0.9", "--nesterov", "--lr", "0.1", "--activation", "tanh", "--loss", "bce"],
    ["--optimizer", "adam", "--activation", "leaky_relu", "--loss", "bce-logits"],
    ["--activation", "sigmoid", "--loss", "mse", "--optimizer", "adam", "--weight-decay", "1e-3"],
    ["--momentum", "0.5", "--weight-decay", "1e-3", "--dropout", "0.1"],
]


@pytest.mark.parametrize("module", EACH_PROGRAM)
@pytest.mark.parametrize("flags", TOOLBOX_RUNS, ids=["bn-dropout-adamw-cosine", "nesterov-tanh-bce",
                                                     "adam-leaky-bce-logits", "sigmoid-mse-adam",
                                                     "momentum-decay-dropout"])
@pytest.mark.usefixtures("one_thread_per_library")
def test_every_toolbox_flag_trains_and_beats_chance(module, flags, capsys):
    # In-process (main(argv)) rather than a subprocess: the same code path, without paying for
    # a fresh interpreter and torch import per case.
    assert importlib.import_module(module).main(["--epochs", "2", "--limit", "3000", "--json", *flags]) == 0
    first, last = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert last["train_loss"] < first["train_loss"]  # it learns
    assert last["test_acc"] > 0.3  # three times chance after 94 steps on 3000 images


@pytest.mark.torch
@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "--momentum and --nesterov belong to sgd, not adam"),
    (["--nesterov"], "--nesterov needs --momentum above 0"),
    (["--dropout", "1"], "argument --dropout: must be at least 0 and below 1, got 1"),
    (["--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
])
def test_toolbox_flag_mistakes_are_one_line_errors(args, message):
    for module in PROGRAMS:
        result = run(module, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1]


@pytest.mark.torch
def test_asking_for_cuda_without_it_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    result = run("torchimpl.train", "--device", "cuda", "--epochs", "1", "--limit", "100")
    assert result.returncode == 2 and "CUDA is not available here: use --device cpu" in result.stderr


@pytest.mark.torch
def test_a_damaged_data_file_is_a_clear_error_from_the_command_line(tmp_path):
    import shutil

    from common.idx import DEFAULT_DATA_DIR, FILES

    for name in FILES["train"] + FILES["test"]:
        shutil.copy(DEFAULT_DATA_DIR / name, tmp_path / name)
    (tmp_path / FILES["train"][1]).write_bytes(b"\x1f\x8b broken")
    for module in PROGRAMS:
        result = run(module, "--data-dir", str(tmp_path), "--epochs", "1")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "checksum mismatch" in result.stderr
