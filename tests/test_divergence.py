"""Diverging runs are said to diverge: both training programs stop at the same step with the same
line, parity fails naming the step and each twin's account, and never prints PASS for it.

Run: python -m pytest tests/test_divergence.py -q   (a few seconds; 64 or 1280 MNIST images)
"""

import json

import numpy as np
import pytest

import scratch.train
from common.errors import InputError
from in_process import run_program
from scratch.toolbox.losses import binary_cross_entropy_with_logits
from scratch.toolbox.model import Network

try:  # the torch twin and parity, for the tests marked torch; scratch's run without it
    import torch
    import torchimpl.train
    from parity import report
    from parity.__main__ import main as parity_main
    from parity.run import Config, run, twins
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = None

pytestmark = pytest.mark.usefixtures("one_thread_per_library")
HINT = "; the run diverged, lower the learning rate (--lr) or check the inputs for extreme values"
WEIGHTS = "the loss is finite, but by this step's update the weights overflowed to inf or nan"


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """One model file both twins load: the same first weights, so they diverge alike."""
    path = tmp_path_factory.mktemp("start") / "start.npz"
    assert scratch.train.main(["--epochs", "0", "--limit", "64", "--save", str(path), "--json"]) == 0
    return str(path)


def last_error(module, argv, capsys):
    """Run a training program's main as its command line does: (exit status, its one stderr line)."""
    capsys.readouterr()
    status, _, err = run_program(module.__name__, argv, capsys)
    assert len(err) == 1, err
    return status, err[0]


# --limit 64 --batch-size 64: every epoch is the one batch of the same 64 images on both twins, so
# the shuffles (drawn differently by each twin) cannot change the step at which the run overflows.
DIVERGING = ["--limit", "64", "--batch-size", "64", "--epochs", "6", "--lr", "1e6"]


def test_scratch_stops_at_the_first_non_finite_loss_with_one_line(start, capsys):
    status, line = last_error(scratch.train, [*DIVERGING, "--load", start], capsys)
    assert status == 2
    assert line == f"python -m scratch.train: error: training stopped at epoch 3, step 1: the loss is nan{HINT}"


@pytest.mark.torch
@pytest.mark.parametrize("loss, where, value", [("ce", "epoch 3, step 1", "nan"), ("mse", "epoch 3, step 1", "inf")])
def test_both_twins_stop_at_the_same_step_with_the_same_line(start, capsys, loss, where, value):
    lines = {}
    for module in (scratch.train, torchimpl.train):
        status, line = last_error(module, [*DIVERGING, "--load", start, "--loss", loss], capsys)
        assert status == 2
        lines[module.__name__] = line.split(": error: ")[1]
    assert lines["scratch.train"] == lines["torchimpl.train"] == (
        f"training stopped at {where}: the loss is {value}{HINT}")


def scratch_and_torch_models(lr):
    """A float32 4-3-2 network on both twins from the same weights, each with its twin's SGD."""
    params, buffers, model = twins((4, 3, 2), "float32", np.random.default_rng(0))
    ours = Network(params, scratch.train.Arch(), buffers, np.random.default_rng(0))
    return ((ours, scratch.train.make_optimizer("sgd", params, lr)),
            (model, torchimpl.train.make_optimizer("sgd", model.parameters(), lr)))


@pytest.mark.torch
@pytest.mark.parametrize("n_batches", [2, 1], ids=["seen in the next loss", "after the last step"])
def test_an_update_that_overflows_the_weights_is_named_at_its_step_on_both_twins(n_batches):
    """lr 3e38 times a gradient of about 1e4 is past float32's 3.4e38: step 1's loss is finite,
    its update is not. The next step's loss shows it; with no next step, the end of the epoch."""
    X = np.full((8, 4), 1e4, dtype=np.float32)  # N, D   large inputs make large gradients
    y = np.array([0, 1] * 4)
    (ours, sgd), (theirs, sgd_t) = scratch_and_torch_models(3e38)
    batches = [(X, y)] * n_batches
    with pytest.raises(InputError) as scratch_error:
        scratch.train.train_epoch(ours, sgd, batches)
    with pytest.raises(InputError) as torch_error:
        torchimpl.train.train_epoch(theirs, sgd_t, [(torch.from_numpy(a), torch.from_numpy(b)) for a, b in batches])
    assert str(scratch_error.value) == str(torch_error.value) == f"training stopped at epoch 1, step 1: {WEIGHTS}{HINT}"
    assert not np.isfinite(ours.params["W1"]).all()  # the message is true: the weights did overflow


@pytest.mark.torch
def test_a_step_size_float32_cannot_hold_is_refused_alike_by_both_twins(start, capsys):
    """Adam's first step is lr / (1 - 0.9): at lr 1e38 that is 1e39, which torch refuses to turn
    into a float32 (a traceback before), where NumPy would round it to inf."""
    lines = set()
    for module in (scratch.train, torchimpl.train):
        status, line = last_error(module, [*DIVERGING[:4], "--optimizer", "adam", "--lr", "1e38", "--load", start],
                                  capsys)
        assert status == 2 and "Traceback" not in line
        lines.add(line.split(": error: ")[1])
    assert lines == {"lr 1e+38 makes a step size of 1e+39, more than float32 holds (3.4e+38, torch refuses it): "
                     "lower the learning rate (--lr) or use float64"}


@pytest.mark.torch
def test_bce_with_logits_agrees_with_torch_for_huge_finite_logits_and_is_nan_only_at_inf():
    """Where the twins' programs part at lr 1e6 (one stopped at nan, one trained on) their
    trajectories differ, not their losses: a finite logit gives torch's finite loss, and only an
    inf logit (a float32 forward overflowing) gives nan, in both."""
    x = np.array([[3e38, -3e38, 1e30, -1e30, 0.5]], dtype=np.float32)  # 1, 5
    for target in (0.0, 1.0):
        y = np.full_like(x, target)
        for j in range(x.shape[1]):  # one element at a time: a mean of several 3e38 would overflow
            ours = binary_cross_entropy_with_logits(x[:, j:j + 1], y[:, j:j + 1])[0]
            theirs = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(x[:, j:j + 1]),
                                                                          torch.from_numpy(y[:, j:j + 1]))
            assert np.isfinite(ours) and float(ours) == pytest.approx(theirs.item(), rel=1e-6), (j, target)
    with np.errstate(invalid="ignore"):
        ours = binary_cross_entropy_with_logits(np.array([[np.inf]], np.float32), np.ones((1, 1), np.float32))[0]
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([[np.inf]]), torch.ones(1, 1))
    assert np.isnan(ours) and torch.isnan(theirs)


# ----------------------------------------------------------------------------- parity

PARITY_DIVERGING = ["--steps", "20", "--limit", "1280", "--lr", "1e6", "--dtype", "float32"]


@pytest.mark.torch
def test_parity_names_the_step_and_both_twins_when_a_run_diverges():
    (result,) = run(Config(steps=20, limit=1280, lr=1e6, dtypes=("float32",)))
    assert result.diverged == {"step": 3, "scratch": "the loss is nan", "torch": "the loss is nan"}
    assert not result.ok and not np.isfinite(result.losses["scratch"][-1]) and len(result.losses["scratch"]) == 3
    failing = [r for r in result.records if not r.ok]
    assert [(r.name, r.step, r.note) for r in failing] == [("diverged", 3, "the loss is nan on both twins")]
    line = report.summary([result])
    assert line.startswith("parity FAIL") and "PASS" not in line
    assert "the float32 run diverged at step 3: the loss is nan on both twins; lower --lr" in line


@pytest.mark.torch
def test_parity_exits_1_for_a_diverging_run_and_its_json_says_where(capsys):
    assert parity_main(PARITY_DIVERGING) == 1
    out = capsys.readouterr().out
    assert "parity PASS" not in out and "float32: one batch <=" in out and "diverged at step 3 of 20" in out
    assert parity_main([*PARITY_DIVERGING, "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert found["ok"] is False
    assert found["diverged"] == {"float32": {"step": 3, "scratch": "the loss is nan", "torch": "the loss is nan"}}


@pytest.mark.parametrize("module", ["scratch.train", pytest.param("torchimpl.train", marks=pytest.mark.torch)])
def test_a_sigmoid_output_made_nan_by_an_overflowed_update_is_a_divergence_not_a_bad_probability(module, capsys):
    """bce's loss refuses a nan output as no probability (torch's BCELoss raises on it); after an
    overflowing update that nan is the run diverging, and both twins say so at the same step."""
    flags = ["--lr", "3.4e38", "--data", "student", "--loss", "bce", "--batch-size", "1", "--epochs", "1",
             "--hidden", "8"]
    status, out, err = run_program(module, flags, capsys)
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0], err
    assert ("training stopped at epoch 1, step 2: the loss is finite, but by this step's update the weights "
            "overflowed to inf or nan; the run diverged") in err[0]
