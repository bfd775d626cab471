"""Parity for the toolbox: every optimizer, schedule, layer and loss, under the float64 targets.

- Trajectories: 100 steps on 1280 MNIST images (5 epochs of 20 batches) for each piece, every
  weight, running statistic, optimizer buffer, loss and lr within 1e-10, eval outputs on the
  test set too.
- Finite differences on the scratch network's whole backward (no torch) with batch norm and
  dropout, for each activation and each loss.
- Dropout: the masks parity hands to torch, and what it leaves alone.
- python -m parity with the toolbox flags.
Random combinations of options and wrong formulas: tests/test_parity_toolbox_properties.py.
Run: python -m pytest tests/test_parity_toolbox.py -q   (about 25 seconds)
"""

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import scratch.toolbox.layers
from parity import tolerances
from parity.compare import NOISE_DRIVEN, compare_one_batch
from parity.run import Config, load_data, run, twins
from parity.steps import GivenMask, draw_masks, set_masks, with_given_masks
from scratch.toolbox import model
from scratch import train as scratch_train
from scratch.toolbox.model import Arch
from scratch.toolbox.schedules import CosineAnnealingLR
from test_oracles import central_difference_error
from torchimpl.toolbox.model import MLP

ROOT = Path(__file__).resolve().parent.parent
ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu"]
LOSSES = ["ce", "bce", "bce-logits", "mse"]
TARGET = 1e-10  # the float64 target for a 100-step trajectory
SHORT = {"steps": 100, "limit": 1280, "dtypes": ("float64",)}  # 20 batches of 64: 5 epochs

# One run per piece, with a learning rate at which training is stable (lr 0.5 with momentum
# 0.9 is not: it amplifies rounding step by step, see test_unstable_momentum_...).
PIECES = {
    "sgd momentum": {"momentum": 0.9, "lr": 0.05},
    "sgd nesterov": {"momentum": 0.9, "nesterov": True, "lr": 0.05},
    "sgd weight decay": {"weight_decay": 5e-3, "lr": 0.1},
    "adam": {"optimizer": "adam"},
    "adam weight decay": {"optimizer": "adam", "weight_decay": 1e-2},
    "adamw": {"optimizer": "adamw"},
    "cosine sgd": {"schedule": "cosine"},
    "cosine adamw": {"optimizer": "adamw", "schedule": "cosine"},
    "dropout": {"dropout": 0.2},
    "batchnorm sgd": {"batchnorm": True},
    "batchnorm adam": {"batchnorm": True, "optimizer": "adam"},
    "sigmoid": {"activation": "sigmoid"},
    "tanh": {"activation": "tanh"},
    "leaky relu": {"activation": "leaky_relu"},
    "bce": {"loss": "bce"},
    "bce with logits": {"loss": "bce-logits"},
    "mse": {"loss": "mse"},
    "everything": {"batchnorm": True, "dropout": 0.2, "activation": "tanh", "optimizer": "adamw",
                   "schedule": "cosine", "loss": "bce"},
}


@pytest.fixture(scope="module")
def mnist():
    return load_data(Config(limit=1280))


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


def failing(records):
    return [f"{r.check} {r.name}: {r.max_rel_err:.2e} > {r.tolerance:g} {r.note}" for r in records if not r.ok]


def names(records, check):
    return [r.name for r in records if r.check == check]

# ----------------------------------------------------------------------------- trajectories


@pytest.mark.parametrize("piece", PIECES)
def test_100_step_float64_trajectory_agrees_within_1e10_for_each_piece(piece, mnist):
    options = PIECES[piece]
    (result,) = run(Config(**SHORT, **options), mnist)
    assert result.ok, failing(result.records)
    config = Config(**options)
    steps = next(r.check for r in result.records if r.check.endswith(" steps"))
    followed = names(result.records, steps)
    hidden = (1, 2)  # 784-128-64-10
    assert {f"{k}{i}" for k in "Wb" for i in (1, 2, 3)} <= set(followed)
    assert "loss (every step)" in followed and ("lr (every step)" in followed) == (config.schedule == "cosine")
    if config.batchnorm:
        bn = {f"{k}{i}" for k in ("gamma", "beta", "running_mean", "running_var") for i in hidden}
        assert bn <= set(followed)
        assert {f"d{k}{i}" for k in ("gamma", "beta") for i in hidden} | {"outputs (eval mode)"} <= set(
            names(result.records, "one batch"))
    state = {"sgd": ["momentum_buffer"] if config.momentum else [], "adam": ["exp_avg", "exp_avg_sq"],
             "adamw": ["exp_avg", "exp_avg_sq"]}[config.optimizer]
    assert {f"{p} {key}" for p in ("W1", "b3") for key in state} <= set(followed)
    assert {"outputs (eval mode)", "predictions differing"} <= set(names(result.records, "test set"))
    for r in result.records:  # the target, except the bias that only rounding moves
        if r.tolerance is not None and r.checked == "max_rel_err" and r.note != NOISE_DRIVEN:
            assert r.max_rel_err <= TARGET, f"{r.check} {r.name}: {r.max_rel_err:.2e}"
    (predictions,) = [r for r in result.records if r.name == "predictions differing"]
    assert predictions.max_abs_err == 0 and result.accuracy["scratch"] == result.accuracy["torch"]


def test_bias_ahead_of_batchnorm_under_adam_is_checked_against_the_noise_tolerance(mnist):
    (result,) = run(Config(**SHORT, batchnorm=True, optimizer="adam"), mnist)
    noisy = {r.name: r for r in result.records if r.note == NOISE_DRIVEN}
    assert set(noisy) == {"b1", "b2", "running_mean1", "running_mean2"}
    assert all(r.tolerance == tolerances.F64_NOISE_DRIVEN and r.ok for r in noisy.values())
    one_batch = {r.name: r for r in result.records if r.check == "one batch"}
    assert one_batch["db1"].scale > 1e3 * np.abs(one_batch["db1"].max_abs_err)  # measured on its layer


def test_cosine_schedule_steps_once_per_epoch_with_t_max_the_epochs_run(mnist, monkeypatch):
    made, stepped = [], []
    init, step = CosineAnnealingLR.__init__, CosineAnnealingLR.step

    def spy_init(self, optimizer, T_max, eta_min=0.0):
        made.append(T_max)
        init(self, optimizer, T_max, eta_min)

    def spy_step(self):
        step(self)
        stepped.append(self.optimizer.lr)

    monkeypatch.setattr(CosineAnnealingLR, "__init__", spy_init)
    monkeypatch.setattr(CosineAnnealingLR, "step", spy_step)
    (result,) = run(Config(**SHORT, schedule="cosine"), mnist)
    assert result.ok and made == [5]  # 100 steps of 20 batches: 5 epochs
    assert len(stepped) == 5 and stepped[-1] == 0 and stepped[0] < 0.5  # lr 0.5 annealed to 0

# ----------------------------------------------------------------------------- finite differences

# Central differences with the oracle of tests/test_oracles.py (h 1e-5, error against the
# tensor's largest gradient). A Linear bias ahead of a batch norm has zero gradient: its entries
# are measured against its layer (W, b), as parity measures them.
FD_STEP, FD_TOL, FD_ENTRIES = 1e-5, 1e-7, 4
FD_SIZES, FD_N = (12, 10, 8, 4), 7


def network_value(params, X, targets, arch, masks, loss):
    buffers = model.init_buffers(params)  # training mode: the output ignores running statistics
    out, _ = model.forward(params, X, arch, buffers, train=True, masks=masks)
    return scratch_train.LOSSES[loss](out, targets)[0]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_network_backward_with_batchnorm_and_dropout_matches_finite_differences(activation, loss):
    rng = np.random.default_rng(10 * ACTIVATIONS.index(activation) + LOSSES.index(loss))
    arch = Arch(activation, batchnorm=True, dropout=0.3, sigmoid_output=loss == "bce")
    params = model.init_params(FD_SIZES, rng, np.float64, batchnorm=True)
    params.update({k: rng.uniform(0.5, 1.5, v.shape) for k, v in params.items() if k.startswith("gamma")})
    params.update({k: rng.uniform(-0.5, 0.5, v.shape) for k, v in params.items() if k.startswith("beta")})
    X, y = rng.standard_normal((FD_N, FD_SIZES[0])), rng.integers(0, FD_SIZES[-1], FD_N)
    masks = draw_masks(rng, FD_SIZES[1:-1], FD_N, arch.dropout, np.float64)  # fixed for every evaluation
    out, caches = model.forward(params, X, arch, model.init_buffers(params), train=True, masks=masks)
    targets = scratch_train.loss_targets(loss, y, out)
    grads, dX = model.backward(scratch_train.LOSSES[loss](out, targets)[1], caches, input_grad=True)

    tensors = {**{name: (params[name], grads[name]) for name in params}, "dX": (X, dX)}
    ahead = {f"b{i}": f"W{i}" for i in range(1, len(FD_SIZES) - 1)}
    value_now = partial(network_value, params, X, targets, arch, masks, loss)
    found = {}
    for name, (value, grad) in tensors.items():
        scale = max(np.abs(grad).max(), np.abs(grads[ahead[name]]).max()) if name in ahead else np.abs(grad).max()
        found[name] = central_difference_error(value_now, value, grad, rng, entries=FD_ENTRIES, step=FD_STEP,
                                               scale=scale)
    bad = {name: f"{err:.1e}" for name, err in found.items() if not err <= FD_TOL}
    assert not bad, f"{activation}, {loss}: hand gradient differs from central differences: {bad}"
    assert {"gamma1", "beta2", "W3", "dX"} <= set(found)
    assert all(np.abs(grads[b]).max() <= 1e-12 * np.abs(grads[w]).max() for b, w in ahead.items())

# ----------------------------------------------------------------------------- dropout masks


def test_given_mask_multiplies_by_the_scratch_mask_and_is_the_identity_in_eval_mode():
    rng = np.random.default_rng(0)
    mask = draw_masks(rng, [5], 4, 0.5, np.float64)[0]  # 4, 5   0 or 2
    x = rng.standard_normal((4, 5))
    module = GivenMask(0.5)
    module.mask = torch.from_numpy(mask)
    assert np.array_equal(module(torch.from_numpy(x)).numpy(), scratch.toolbox.layers.dropout_forward(x, mask)[0])
    module.eval()
    assert np.array_equal(module(torch.from_numpy(x)).numpy(), x)


def test_parity_swaps_dropout_in_a_copy_and_leaves_the_torchimpl_model_alone():
    net = MLP([6, 5, 4, 3], dropout=0.3)
    twin = with_given_masks(net)
    assert [type(m) for m in net.net].count(torch.nn.Dropout) == 2  # the original keeps nn.Dropout
    assert [type(m) for m in twin.net].count(GivenMask) == 2 and twin.net[2].p == 0.3
    assert list(net.state_dict()) == list(twin.state_dict())  # same layout, same keys
    assert all(p is not q for p, q in zip(net.parameters(), twin.parameters()))


def test_the_same_masks_give_the_same_dropout_outputs_in_both_twins():
    rng = np.random.default_rng(3)
    arch = Arch(dropout=0.5)
    params, buffers, net = twins((8, 6, 6, 3), "float64", rng, arch)
    X = rng.standard_normal((5, 8))
    masks = draw_masks(rng, [6, 6], 5, 0.5, np.float64)
    out, _ = model.forward(params, X, arch, buffers, train=True, masks=masks)
    net.train()
    set_masks(net, masks)
    out_t = net(torch.from_numpy(X)).detach().numpy()
    assert np.allclose(out, out_t, rtol=1e-14, atol=0)  # the same units dropped, the same scale
    assert not np.allclose(out, net.eval()(torch.from_numpy(X)).detach().numpy())  # eval: no dropout

def test_dropout_without_masks_is_refused_rather_than_drawn_differently_by_each_twin():
    rng = np.random.default_rng(4)
    arch = Arch(dropout=0.5)
    params, buffers, net = twins((8, 6, 3), "float64", rng, arch)
    with pytest.raises(ValueError, match="dropout needs its masks"):
        compare_one_batch(params, net, rng.standard_normal((5, 8)), rng.integers(0, 3, 5), 1e-13, arch=arch,
                          buffers=buffers)


# ----------------------------------------------------------------------------- the program


def run_program(*flags):
    return subprocess.run([sys.executable, "-m", "parity", *flags], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_python_m_parity_with_batchnorm_dropout_adamw_and_cosine_reports_ok_as_json():
    done = run_program("--batchnorm", "--dropout", "0.2", "--optimizer", "adamw", "--schedule", "cosine",
                       "--steps", "100", "--limit", "1280", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    config = report["config"]
    assert (config["optimizer"], config["lr"], config["weight_decay"]) == ("adamw", 1e-3, 1e-2)
    assert config["batchnorm"] is True and config["dropout"] == 0.2 and config["steps"] == 100
    assert config["schedule"] == "cosine"
    float64 = {(r["check"], r["name"]): r for r in report["records"] if r["dtype"] == "float64"}
    for key in [("100 AdamW steps", "running_var1"), ("100 AdamW steps", "W2 exp_avg_sq"),
                ("100 AdamW steps", "lr (every step)"), ("one batch", "dgamma2"),
                ("test set", "outputs (eval mode)")]:
        assert float64[key]["ok"] and float64[key]["max_rel_err"] <= TARGET, key


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "adam", "--momentum", "0.9"], "belong to sgd"),
    (["--nesterov"], "--nesterov needs --momentum"),
])
def test_flags_the_training_programs_refuse_exit_2(flags, message):
    done = run_program(*flags, "--steps", "1", "--limit", "64")
    assert done.returncode == 2 and message in done.stderr
