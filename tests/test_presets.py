"""The chapters' examples on both twins: presets, their generated data, summaries, plots, lines."""

import importlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import scratch.train
from common import cli, plot, synthetic
from common.errors import InputError
from common.presets import DATASETS, PRESETS
from scratch.extras import datasets as scratch_datasets

try:  # the torch twin, for the tests marked torch; the others run without it (conftest.py)
    import torch

    import torchimpl.train
    from torchimpl.extras import datasets as torch_datasets
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = torchimpl = torch_datasets = None

PROGRAMS = [scratch.train, torchimpl.train] if torchimpl else []  # the tests that use both are marked torch
NAMES = dict(zip(PROGRAMS, ["scratch", "torchimpl"]))


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


def run_main(program, capsys, *argv):
    assert program.main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


def masked(lines):
    """The lines with every number replaced, and the twin's name and device dropped."""
    out = []
    for line in lines:
        line = re.sub(r"^(scratch|torchimpl): ", "", line).replace(", cpu", "")
        out.append(re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", line))
    return out


# ----------------------------------------------------------------------------- the table


def test_every_preset_setting_is_a_flag_of_both_programs_with_a_valid_value():
    parser = cli.build_parser("p", "d", device=True)
    dests = {action.dest: action for action in parser._actions}
    for name, preset in PRESETS.items():
        assert set(preset.settings) <= set(dests), name
        args = cli.parse_args(cli.build_parser("p", "d"), ["--preset", name])
        for key, value in preset.settings.items():
            assert getattr(args, key) == value, (name, key)
            choices = dests[key].choices
            assert choices is None or value in choices, (name, key)
        assert args.loss in DATASETS[args.data].losses


def test_a_preset_sets_defaults_and_explicit_flags_still_win():
    parser = cli.build_parser("p", "d")
    args = cli.parse_args(parser, ["--epochs", "3", "--preset", "mnist-adamw", "--dropout", "0.2"])
    assert (args.epochs, args.dropout, args.optimizer) == (3, 0.2, "adamw")
    assert (args.weight_decay, args.schedule) == (1e-4, "cosine")
    args = cli.parse_args(cli.build_parser("p", "d"), ["--preset", "mnist-adam", "--epochs", "20"])
    assert args.epochs == 20 and args.hidden == [128]  # 20 is the flag's own default: still explicit
    assert cli.layer_sizes(cli.parse_args(cli.build_parser("p", "d"), ["--preset", "edges"])) == [25, 16, 8, 2]
    assert cli.layer_sizes(cli.parse_args(cli.build_parser("p", "d"), [])) == [784, 128, 64, 10]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "sum", "--loss", "ce"], "--loss ce does not fit the sum data (regression): use one of mse"),
    (["--preset", "student", "--loss", "ce"], "--loss ce does not fit the student data (binary)"),
    (["--preset", "sum", "--limit", "10"], "--limit does not apply to the sum data"),
])
def test_settings_that_do_not_fit_the_data_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args(cli.build_parser("p", "d"), argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("module", ["scratch.train", pytest.param("torchimpl.train", marks=pytest.mark.torch)])
def test_a_bad_preset_combination_exits_2_with_one_line(module):
    result = subprocess.run([sys.executable, "-m", module, "--preset", "sum", "--loss", "bce"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("error: --loss bce does not fit the sum data "
                                                           "(regression): use one of mse")


def test_epoch_lines_print_every_k_from_the_first_and_the_last():
    assert [e for e in range(1, 1001) if cli.should_print(e, 1000, 100)] == [1, 101, 201, 301, 401, 501, 601,
                                                                             701, 801, 901, 1000]
    assert [e for e in range(1, 4) if cli.should_print(e, 3, 1)] == [1, 2, 3]


# ----------------------------------------------------------------------------- generated data


def test_edge_patches_are_deterministic_balanced_and_one_hot():
    X, Y, X_test, Y_test = synthetic.edges(0)
    assert (len(X), len(X_test)) == (200, 50) and all(len(row) == 25 for row in X + X_test)
    assert synthetic.edges(0) == (X, Y, X_test, Y_test) and synthetic.edges(1)[0] != X
    assert sum(y[1] for y in Y) == 100 and sum(y[1] for y in Y_test) == 25
    assert all(y in ([1.0, 0.0], [0.0, 1.0]) for y in Y + Y_test)


def test_an_edge_patch_has_a_contrast_step_and_a_flat_patch_has_none():
    X, Y, _, _ = synthetic.edges(0)
    for row, label in zip(X, Y):
        patch = np.array(row).reshape(5, 5)
        rows, cols = np.abs(np.diff(patch, axis=0)).mean(axis=1), np.abs(np.diff(patch, axis=1)).mean(axis=0)
        steps = max(rows.max(), cols.max())  # the largest mean jump between neighbouring rows or columns
        assert (steps > 0.4) == bool(label[1])  # edges step by at least 0.6 (less 0.2 of noise)


def test_sum_rows_are_fresh_every_epoch_and_their_targets_are_the_sums():
    X1, y1 = synthetic.sum_rows(0, 1, 100)
    X2, _ = synthetic.sum_rows(0, 2, 100)
    X_test, _ = synthetic.sum_rows(0, "test", 100)
    assert X1 != X2 and X1 != X_test and synthetic.sum_rows(0, 1, 100) == (X1, y1)
    assert np.allclose(np.array(X1).sum(axis=1, keepdims=True), y1, rtol=0, atol=1e-12)
    assert -1 <= np.min(X1) and np.max(X1) < 1


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["edges", "student", "sum"])
def test_both_twins_get_bit_identical_data(name, dtype):
    ours, theirs = scratch_datasets.load(name, 5, np.dtype(dtype)), torch_datasets.load(name, 5, getattr(torch, dtype))
    pairs = [(ours.test, theirs.test), (ours.train, theirs.train)]
    if ours.fresh:
        pairs += [(ours.fresh(3), theirs.fresh(3))]
    for a, b in pairs:
        assert (a is None) == (b is None)
        for x, t in zip(a or (), b or ()):
            assert x.dtype == t.numpy().dtype and np.array_equal(x, t.numpy())


# ----------------------------------------------------------------------------- the chapters' runs


@pytest.mark.torch
def test_edges_preset_learns_on_both_twins_and_prints_the_same_lines(capsys):
    outputs = {}
    for program in PROGRAMS:
        lines = run_main(program, capsys, "--preset", "edges")
        assert lines[0].startswith(f"{NAMES[program]}: 25-16-8-2 relu, sgd lr 0.1, ce loss, batch 200, float32, "
                                   "200 train / 50 test patches, preset edges")
        assert [line.split("/")[0] for line in lines[1:]] == [f"epoch {e:>3}" for e in (*range(1, 200, 20), 200)]
        last = re.search(r"train acc (\S+)  test acc (\S+)", lines[-1]).groups()
        assert float(last[0]) >= 0.9 and float(last[1]) >= 0.85, lines[-1]
        outputs[program] = masked(lines)
    assert outputs[scratch.train] == outputs[torchimpl.train]


@pytest.mark.torch
def test_student_preset_reloads_the_model_and_asks_about_a_new_student(capsys):
    outputs = {}
    for program in PROGRAMS:
        lines = run_main(program, capsys, "--preset", "student", "--epochs", "301")
        device = ", cpu" if program is torchimpl.train else ""
        assert lines[0].endswith("4 train students, no test set, preset student" + device)
        epochs = [int(re.match(r"epoch +(\d+)/301", line).group(1)) for line in lines[1:-1]]
        assert epochs == [1, 101, 201, 301]
        losses = [float(re.search(r"train loss (\S+)", line).group(1)) for line in lines[1:-1]]
        assert losses == sorted(losses, reverse=True) and losses[-1] < 0.1
        assert all("test acc -" in line for line in lines[1:-1])
        probability = re.fullmatch(r"reloaded model: pass probability for 6 h study and 5 h sleep: (\S+)", lines[-1])
        assert 0.5 < float(probability.group(1)) <= 1
        outputs[program] = masked(lines)
    assert outputs[scratch.train] == outputs[torchimpl.train]


@pytest.mark.torch
def test_sum_preset_prints_the_mse_and_predicts_the_sum(capsys):
    for program in PROGRAMS:
        lines = run_main(program, capsys, "--preset", "sum", "--epochs", "4")
        assert "10-32-1 relu, adam lr 0.001, mse loss, batch 100" in lines[0]
        assert "10000 fresh train rows every epoch / 1000 test rows, preset sum" in lines[0]
        mses = [float(re.search(r"train acc -  test acc -  test mse (\S+)  ", line).group(1)) for line in lines[1:5]]
        assert mses == sorted(mses, reverse=True) and mses[-1] < 0.1
        probe = re.fullmatch(r"prediction for x = \(0\.3, \.\.\., 0\.3\), whose sum is 3: (\S+)", lines[-1])
        guess = float(probe.group(1))
        assert abs(guess - 3) < 0.5
        records = [json.loads(line) for line in run_main(program, capsys, "--preset", "sum", "--epochs", "1", "--json")]
        assert records[0]["train_acc"] is None and records[0]["test_acc"] is None and records[0]["test_mse"] > 0
        assert records[1]["probe"].startswith("prediction for x")


@pytest.mark.torch
def test_mnist_adam_preset_builds_the_chapters_network(capsys):
    for program in PROGRAMS:
        lines = run_main(program, capsys, "--preset", "mnist-adam", "--limit", "1000", "--epochs", "1")
        assert "784-128-10 relu, adam lr 0.001, ce loss, batch 64, float32, 1000 train / 10000 test images, " \
               "preset mnist-adam" in lines[0]
        assert re.fullmatch(r"epoch 1/1  train loss \S+  train acc \S+  test acc \S+  \S+s", lines[1])


# ----------------------------------------------------------------------------- the shape trap


@pytest.mark.torch
def test_mse_refuses_the_chapters_100_1_against_100_on_both_twins():
    pred, target = np.zeros((100, 1)), np.zeros(100)
    with pytest.raises(InputError, match=r"predictions have shape \(100, 1\) but targets have \(100,\); "
                                         r"NumPy would broadcast them to \(100, 100\)"):
        scratch.train.LOSSES["mse"](pred, target)
    with pytest.raises(InputError, match=r"mse: predictions have shape \(100, 1\) but targets have \(100,\); "
                                         r"torch would broadcast them"):
        torchimpl.train.loss_targets("mse", torch.from_numpy(target), torch.from_numpy(pred))
    assert scratch.train.LOSSES["mse"](pred, target[:, None])[0] == 0  # matching shapes pass
    assert torchimpl.train.loss_targets("mse", torch.zeros(100, 1), torch.zeros(100, 1)).shape == (100, 1)


@pytest.mark.torch
def test_training_on_targets_shaped_like_the_chapters_is_refused_before_a_step():
    X, y = np.zeros((100, 10), np.float32), np.zeros(100, np.float32)
    with pytest.raises(InputError, match=r"targets must be floats shaped \(100, 1\)"):
        scratch.train.check_targets(X, y, 10, 1)
    with pytest.raises(InputError, match=r"targets must be floats shaped \(100, 1\)"):
        torchimpl.train.check_targets(torch.from_numpy(X), torch.from_numpy(y), 10, 1)


# ----------------------------------------------------------------------------- summary and plot


@pytest.mark.torch
@pytest.mark.parametrize("flags", [[], ["--batchnorm", "--dropout", "0.2", "--activation", "tanh"],
                                   ["--preset", "student"], ["--preset", "mnist-adam"], ["--loss", "bce", "--hidden"]])
def test_summary_is_the_same_text_on_both_twins(flags, capsys):
    texts = [run_main(program, capsys, "--summary", *flags) for program in PROGRAMS]
    assert texts[0] == texts[1]
    if not flags:
        assert texts[0][-1] == "total: 109,386 trainable parameters"
        assert texts[0][2].split() == ["net.0", "Linear", "(N,", "128)", "100,480"]


def test_summary_counts_batch_norm_buffers_apart(capsys):
    text = run_main(scratch.train, capsys, "--summary", "--batchnorm")
    assert text[-2:] == ["total: 109,770 trainable parameters",
                         "plus 386 batch norm running statistics (buffers, not trained)"]


@pytest.mark.torch
def test_plot_writes_a_png_on_both_twins(tmp_path, capsys):
    for program in PROGRAMS:
        path = tmp_path / f"{NAMES[program]}.png"
        run_main(program, capsys, "--preset", "sum", "--epochs", "2", "--plot", str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path = tmp_path / "both.png"
    history = [cli.epoch_record(e, 1 / e, 0.5, 0.6, 0.1) for e in (1, 2)]
    plot.plot_history({"scratch": history, "torchimpl": history}, path, "both twins")
    assert path.stat().st_size > 1000


@pytest.mark.torch
def test_plot_without_matplotlib_is_a_clear_error_before_training(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for program in PROGRAMS:
        with pytest.raises(InputError, match="--plot needs matplotlib, which is not installed"):
            program.main(["--preset", "edges", "--plot", str(tmp_path / "x.png")])


def test_no_numpy_or_torch_in_the_shared_preset_modules():
    for name in ("common.presets", "common.synthetic", "common.plot", "common.summary", "common.checkpoint"):
        source = importlib.import_module(name).__file__
        text = open(source).read()
        assert "import numpy" not in text and "import torch" not in text, name
