"""python -m parity --preset NAME and --plot: the chapters' examples under parity, in-process."""

import json

import pytest

from parity.__main__ import main


def run_json(capsys, *argv):
    status = main([*argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("preset, steps, task_record", [
    ("edges", 200, "accuracy"),  # 200 full-batch epochs of the 200 patches
    ("student", 1000, "accuracy"),  # 1000 full-batch epochs of the four students
    ("sum", 3000, None),  # 30 epochs of 100 batches of 100 rows: a regression, outputs only
])
def test_generated_presets_run_the_chapters_whole_training_and_agree_in_float64(capsys, preset, steps, task_record):
    status, out = run_json(capsys, "--preset", preset, "--dtype", "float64")
    assert status == 0 and out["ok"], [r for r in out["records"] if not r["ok"]]
    assert out["config"]["data"] == preset and out["config"]["steps"] == steps
    names = {r["name"] for r in out["records"]}
    assert "outputs (eval mode)" in names and "loss (every step)" in names
    assert (task_record in names) if task_record else ("accuracy" not in names)


def test_an_mnist_preset_takes_its_settings_and_explicit_flags_still_win(capsys):
    status, out = run_json(capsys, "--preset", "mnist-adam", "--steps", "30", "--limit", "640", "--dtype", "float64")
    assert status == 0 and out["ok"]
    config = out["config"]
    assert config["layer_sizes"] == [784, 128, 10] and config["optimizer"] == "adam" and config["lr"] == 1e-3
    assert config["steps"] == 30 and config["data"] == "mnist"


def test_plot_draws_both_twins_loss_curves_to_a_png(capsys, tmp_path):
    path = tmp_path / "losses.png"
    assert main(["--preset", "edges", "--steps", "40", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "parity PASS" in capsys.readouterr().out
