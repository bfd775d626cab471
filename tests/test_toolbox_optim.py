"""scratch/toolbox/optim.py and scratch/toolbox/schedules.py against torch.optim and its CosineAnnealingLR.

Trajectories of 100+ steps on random gradients in float64, comparing the parameters and every
piece of optimizer state (momentum buffers, Adam's step count and moments) after the run.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InputError
from scratch import mlp
from scratch.toolbox.optim import SGD, Adam, AdamW
from scratch.toolbox.schedules import CosineAnnealingLR

try:  # the oracle of the tests marked torch; the others run without it (conftest.py)
    import torch
except ModuleNotFoundError:
    torch = None

# The target for a 100-step float64 trajectory is 1e-10. Scratch writes the textbook
# formulas (m = b1 m + (1 - b1) g, m / (1 - b1^t), sqrt(v_hat) + eps); torch evaluates the same
# rules through lerp, addcmul and addcdiv in another order, so each step rounds differently by
# about an ulp: measured at most 8.0e-16 on parameters and state over these cases and 60 random
# hyperparameter draws. 1e-12 stays 100x inside the target and would still catch any rule
# difference (lr inside the momentum buffer, eps inside the square root): those show at 1e-4.
TRAJECTORY_TOL = 1e-12
# A cosine lr sequence, normwise (max |ours - torch| / max |torch|). Scratch evaluates the closed
# form; torch's recursion rescales the previous lr each epoch, so its rounding accumulates,
# most where lr - eta_min is small: measured at most 9.0e-15 (T_max 7, after 40 epochs, five
# and a half periods), 2.1e-16 within the first 1.5 periods of T_max 20. 1e-13 is 10x that; an
# off-by-one epoch or a wrong period is wrong by 1e-2 of the lr.
LR_TOL = 1e-13
STEPS = 150
SHAPES = {"W1": (6, 5), "b1": (6,), "W2": (3, 6), "b2": (3,)}  # a small MLP's parameter dict
ADAMS = {"Adam": (Adam, lambda *a, **k: torch.optim.Adam(*a, **k)),  # torch's class looked up when called
         "AdamW": (AdamW, lambda *a, **k: torch.optim.AdamW(*a, **k))}


def case_id(kwargs):
    return ",".join(f"{k}={v}" for k, v in kwargs.items())


def rel_err(a, b):
    """Normwise relative error max|a - b| / max|b| (DESIGN.md section 4)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.abs(b).max()
    return np.abs(a - b).max() / scale if scale else np.abs(a - b).max()


def run_pair(make_ours, make_theirs, seed, steps=STEPS, epochs=None, T_max=None):
    """Step both optimizers on the same random gradients; with epochs, a cosine schedule too.

    Returns our params, torch's params (as arrays), both optimizers and both lr sequences.
    """
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    tensors = {name: torch.tensor(p.copy(), requires_grad=True) for name, p in params.items()}
    ours, theirs = make_ours(params), make_theirs(list(tensors.values()))
    schedules = None
    if epochs:
        schedules = (CosineAnnealingLR(ours, T_max), torch.optim.lr_scheduler.CosineAnnealingLR(
            theirs, T_max))
    lrs = ([], [])
    for step in range(steps * (epochs or 1)):
        grads = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
        for name, t in tensors.items():
            t.grad = torch.tensor(grads[name].copy())
        ours.step(grads)
        theirs.step()
        if schedules and (step + 1) % steps == 0:  # end of an epoch
            for schedule, seq in zip(schedules, lrs):
                schedule.step()
                seq.append(schedule.get_last_lr()[0])
    t_params = {name: t.detach().numpy() for name, t in tensors.items()}
    return params, t_params, ours, theirs, tensors, lrs


def assert_trajectories_agree(params, t_params, ours, theirs, tensors, state_keys):
    for name in params:
        err = rel_err(params[name], t_params[name])
        assert err <= TRAJECTORY_TOL, f"param {name} differs from torch by {err:.2e}"
        t_state = theirs.state[tensors[name]]
        for ours_key, torch_key in state_keys.items():
            mine = ours.state[name] if ours_key is None else ours.state[name][ours_key]
            err = rel_err(mine, t_state[torch_key].numpy())
            assert err <= TRAJECTORY_TOL, f"state {name}.{torch_key} differs by {err:.2e}"


# ----------------------------------------------------------------------------- SGD

SGD_CASES = [
    dict(lr=0.05),
    dict(lr=0.05, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3),
    dict(lr=0.02, momentum=0.5, dampening=0.3, weight_decay=0.1),
]


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", SGD_CASES, ids=case_id)
def test_sgd_trajectory_and_momentum_buffers_match_torch(kwargs):
    result = run_pair(lambda p: SGD(p, **kwargs), lambda p: torch.optim.SGD(p, **kwargs), seed=0)
    state_keys = {None: "momentum_buffer"} if kwargs.get("momentum") else {}
    assert_trajectories_agree(*result[:5], state_keys)


def test_sgd_without_momentum_or_decay_is_the_cores_plain_step():
    """The toolbox SGD builds on scratch/mlp.py's: with nothing added it takes the same step."""
    assert issubclass(SGD, mlp.SGD)
    rng = np.random.default_rng(4)
    params = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    core_params = {name: p.copy() for name, p in params.items()}
    ours, core = SGD(params, lr=0.05), mlp.SGD(core_params, lr=0.05)
    for _ in range(3):
        grads = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
        ours.step(grads)
        core.step(grads)
    assert all(np.array_equal(params[name], core_params[name]) for name in SHAPES)
    assert ours.state == {}


# ----------------------------------------------------------------------------- Adam, AdamW

ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, weight_decay=0.1),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
    dict(lr=1e-2, betas=(0.3, 0.5), eps=1e-3),  # 1 - beta1 >= 0.5: torch's lerp, other branch
]


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=case_id)
def test_adam_trajectory_and_moments_match_torch(kind, kwargs):
    ours_cls, torch_cls = ADAMS[kind]
    params, t_params, ours, theirs, tensors, _ = run_pair(
        lambda p: ours_cls(p, **kwargs), lambda p: torch_cls(p, **kwargs), seed=1)
    assert_trajectories_agree(params, t_params, ours, theirs, tensors,
                              {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})
    for name, t in tensors.items():
        assert ours.state[name]["step"] == theirs.state[t]["step"].item() == STEPS


@pytest.mark.torch
def test_adamw_default_weight_decay_is_torchs():
    params = {"w": np.ones(3)}
    assert AdamW(params).weight_decay == torch.optim.AdamW([torch.ones(3)]).defaults["weight_decay"]
    assert Adam(params).weight_decay == 0


def test_adamw_decay_is_decoupled_from_the_moments():
    """With a zero gradient AdamW only shrinks p by (1 - lr wd); Adam would move it by ~lr."""
    params = {"w": np.array([2.0, -3.0])}
    opt = AdamW(params, lr=0.1, weight_decay=0.5)
    opt.step({"w": np.zeros(2)})
    assert np.array_equal(params["w"], np.array([2.0, -3.0]) * (1 - 0.1 * 0.5))
    assert not opt.state["w"]["exp_avg"].any() and not opt.state["w"]["exp_avg_sq"].any()


def test_optimizers_never_write_into_the_gradients():
    rng = np.random.default_rng(2)
    for opt_cls, kwargs in [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)),
                            (Adam, dict(weight_decay=0.1)), (AdamW, {})]:
        params = {"w": rng.standard_normal(4)}
        grads = {"w": rng.standard_normal(4)}
        saved = grads["w"].copy()
        opt = opt_cls(params, **kwargs)
        opt.step(grads)
        opt.step(grads)
        assert np.array_equal(grads["w"], saved), opt_cls.__name__
        buffers = opt.state["w"].values() if isinstance(opt.state["w"], dict) else [opt.state["w"]]
        arrays = [b for b in buffers if isinstance(b, np.ndarray)]
        assert not any(np.shares_memory(grads["w"], b) for b in arrays)


def test_adam_refuses_bad_hyperparameters():
    params = {"w": np.ones(2)}
    with pytest.raises(InputError, match="betas"):
        Adam(params, betas=(0.9, 1.0))
    with pytest.raises(InputError, match="must be >= 0"):
        AdamW(params, lr=-1e-3)


@pytest.mark.torch
@settings(max_examples=25)
@given(momentum=st.sampled_from([0.0, 0.5, 0.9, 0.99]), dampening=st.sampled_from([0.0, 0.1]),
       nesterov=st.booleans(), weight_decay=st.sampled_from([0.0, 1e-4, 0.1]),
       adam_kind=st.sampled_from(["Adam", "AdamW"]), beta1=st.sampled_from([0.0, 0.5, 0.9]),
       beta2=st.sampled_from([0.9, 0.999]), seed=st.integers(0, 2**16))
def test_any_hyperparameters_keep_the_optimizers_equal(momentum, dampening, nesterov, weight_decay,
                                                        adam_kind, beta1, beta2, seed):
    if nesterov and (momentum == 0 or dampening):
        nesterov = False  # torch refuses that combination as scratch's SGD does
    sgd = dict(lr=0.03, momentum=momentum, dampening=dampening, nesterov=nesterov,
               weight_decay=weight_decay)
    result = run_pair(lambda p: SGD(p, **sgd), lambda p: torch.optim.SGD(p, **sgd), seed, steps=100)
    assert_trajectories_agree(*result[:5], {None: "momentum_buffer"} if momentum else {})
    adam = dict(lr=5e-3, betas=(beta1, beta2), weight_decay=weight_decay)
    ours_cls, torch_cls = ADAMS[adam_kind]
    result = run_pair(lambda p: ours_cls(p, **adam), lambda p: torch_cls(p, **adam), seed,
                      steps=100)
    assert_trajectories_agree(*result[:5], {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})


# ----------------------------------------------------------------------------- cosine schedule


class LrHolder:
    """The one thing a schedule needs from an optimizer: an lr attribute."""

    def __init__(self, lr):
        self.lr = lr


@pytest.mark.torch
@pytest.mark.parametrize("T_max,eta_min,epochs", [(20, 0.0, 30), (20, 1e-3, 30), (7, 0.0, 40),
                                                  (1, 0.0, 6), (3, 0.05, 12)])
def test_cosine_lr_sequence_is_the_closed_form_and_follows_torchs(T_max, eta_min, epochs):
    """Past T_max too: torch's recursion climbs back up the cosine, and so does the closed form."""
    lr0 = 0.1
    ours = CosineAnnealingLR(LrHolder(lr0), T_max, eta_min)
    t_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(t_opt, T_max, eta_min)
    assert ours.get_last_lr() == theirs.get_last_lr() == [lr0]
    lrs, t_lrs = [], []
    for epoch in range(1, epochs + 1):
        t_opt.step()
        ours.step()
        theirs.step()
        (lr,) = ours.get_last_lr()
        assert lr == ours.optimizer.lr and ours.last_epoch == theirs.last_epoch == epoch
        closed = eta_min + (lr0 - eta_min) * (1 + math.cos(math.pi * epoch / T_max)) / 2
        assert lr == closed, f"epoch {epoch}"
        lrs.append(lr)
        t_lrs.append(theirs.get_last_lr()[0])
    err = rel_err(lrs, t_lrs)
    assert err <= LR_TOL, f"lr sequence differs from torch's by {err:.2e}"
    bottoms = [lr for epoch, lr in enumerate(lrs, start=1) if epoch % (2 * T_max) == T_max]
    assert bottoms and all(lr == eta_min for lr in bottoms)  # cos(pi) = -1 exactly


@pytest.mark.torch
def test_cosine_schedule_drives_adam_like_torch():
    """30 epochs of 5 steps, lr annealed per epoch: parameters, moments and lrs all agree."""
    params, t_params, ours, theirs, tensors, (lrs, t_lrs) = run_pair(
        lambda p: Adam(p, lr=1e-2), lambda p: torch.optim.Adam(p, lr=1e-2), seed=3,
        steps=5, epochs=30, T_max=20)
    assert len(lrs) == len(t_lrs) == 30 and rel_err(lrs, t_lrs) <= LR_TOL
    assert_trajectories_agree(params, t_params, ours, theirs, tensors,
                              {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})


def test_cosine_schedule_refuses_a_bad_period():
    for bad in [0, -3, 2.5, True]:
        with pytest.raises(InputError, match="T_max"):
            CosineAnnealingLR(LrHolder(0.1), bad)
