"""scratch/toolbox/layers.py's activations, dropout and batch norm against torch and finite differences.

Two oracles for every hand-written backward: torch autograd with a random upstream gradient
((out * dout).sum().backward(), never ones: a ones gradient makes batch norm's input gradient
cancel to zero), and central finite differences. All in float64.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InputError
from scratch.toolbox.layers import (batchnorm_backward, batchnorm_forward, dropout_backward,
                            dropout_forward, dropout_mask, leaky_relu_backward, leaky_relu_forward,
                            sigmoid_backward, sigmoid_forward, tanh_backward, tanh_forward)

try:  # the oracle of the tests marked torch; the finite-difference tests run without it (conftest.py)
    import torch
except ModuleNotFoundError:
    torch = None

# float64 against torch: the two sides differ only in rounding (torch's SIMD exp/tanh, its fused
# multiply-adds, its summation order; batch norm here is the textbook gamma * xhat + beta, which
# torch's kernel folds into one scale and shift), a few units in the last place of ~1e-16.
# Measured on batch norm over 300 random shapes: at most 2.4e-15, and 1.3e-14 on dbeta, a sum of
# dout that can cancel. 1e-13 leaves a margin yet fails on any real formula difference, which
# shows up at 1e-8 or worse.
TORCH_TOL = 1e-13
# Dropout is one multiplication by the same mask on both sides: bitwise equal.
DROPOUT_TOL = 0.0
# Central differences in float64 with step 1e-6: truncation ~h^2 and cancellation ~1e-16/h
# leave about 1e-9 relative error; 1e-7 is the usual gradient-check bar.
FD_TOL = 1e-7
FD_STEP = 1e-6


def rel_err(a, b, floor=0.0):
    """Normwise relative error max|a - b| / max|b| (DESIGN.md section 4).

    floor, when given, is the scale of the terms that produced b: where b is a cancellation
    (a saturated activation's 1 - y, batch norm's dx at N = 2, mathematically 0) its rounding
    error is relative to those terms, not to the tiny result.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max() if b.size else 0.0, floor)
    return np.abs(a - b).max() / scale if scale else np.abs(a - b).max()


def torch_grads(fn, arrays, dout):
    """Run fn on float64 tensors made from arrays, backprop a given upstream gradient."""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    (out * torch.tensor(dout)).sum().backward()
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


def numeric_grad(f, x, h=FD_STEP):
    """Central differences of the scalar f() with respect to each entry of x (bumped in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


# ----------------------------------------------------------------------------- activations

ACTIVATIONS = {  # torch's function looked up when called: scratch's tests run without torch
    "sigmoid": (sigmoid_forward, sigmoid_backward, lambda t: torch.sigmoid(t)),
    "tanh": (tanh_forward, tanh_backward, lambda t: torch.tanh(t)),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward, lambda t: torch.nn.functional.leaky_relu(t)),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_matches_torch_forward_and_backward(name):
    forward, backward, torch_fn = ACTIVATIONS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 33)) * 4  # N, H
    x[0, :4] = [-800.0, 800.0, 0.0, -0.0]  # saturation far past exp's overflow, and the kink
    dout = rng.standard_normal(x.shape)  # N, H
    out, cache = forward(x)
    dx = backward(dout, cache)
    t_out, (t_dx,) = torch_grads(torch_fn, [x], dout)
    assert rel_err(out, t_out) <= TORCH_TOL, f"{name} forward: {rel_err(out, t_out):.2e}"
    assert rel_err(dx, t_dx) <= TORCH_TOL, f"{name} dx: {rel_err(dx, t_dx):.2e}"
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(dx))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(name):
    forward, backward, _ = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep leaky relu's kink out of reach of the step
    dout = rng.standard_normal(x.shape)
    dx = backward(dout, forward(x)[1])
    num = numeric_grad(lambda: (forward(x)[0] * dout).sum(), x)
    assert rel_err(dx, num) <= FD_TOL, f"{name}: {rel_err(dx, num):.2e}"


def test_activations_never_write_into_their_inputs():
    rng = np.random.default_rng(2)
    x, dout = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    x0, dout0 = x.copy(), dout.copy()
    for forward, backward, _ in ACTIVATIONS.values():
        backward(dout, forward(x)[1])
    assert np.array_equal(x, x0) and np.array_equal(dout, dout0)


@pytest.mark.torch
@settings(max_examples=40)
@given(n=st.integers(1, 20), h=st.integers(1, 20), scale=st.sampled_from([0.1, 1.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_activations_match_torch_for_any_shape(n, h, scale, seed):
    rng = np.random.default_rng(seed)
    x, dout = rng.standard_normal((n, h)) * scale, rng.standard_normal((n, h))
    for name, (forward, backward, torch_fn) in ACTIVATIONS.items():
        out, cache = forward(x)
        t_out, (t_dx,) = torch_grads(torch_fn, [x], dout)
        assert rel_err(out, t_out) <= TORCH_TOL, name
        # every derivative here is at most 1; in saturation it is 1 - y with y within an ulp
        # of 1 on each side, so its error is an ulp of dout, however small the gradient
        assert rel_err(backward(dout, cache), t_dx, floor=np.abs(dout).max()) <= TORCH_TOL, name


# ----------------------------------------------------------------------------- dropout


@pytest.mark.torch
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
def test_dropout_with_a_given_mask_matches_torch(p):
    """torch's dropout is x * (bernoulli(1 - p) / (1 - p)); the same keep pattern, the same out."""
    rng = np.random.default_rng(3)
    x, dout = rng.standard_normal((64, 50)), rng.standard_normal((64, 50))  # N, H
    mask = dropout_mask(np.random.default_rng(4), x.shape, p)  # N, H
    keep = torch.tensor(mask != 0, dtype=torch.float64)
    noise = keep.div_(1 - p)  # torch's own construction (aten _dropout_impl)
    out, cache = dropout_forward(x, mask)
    dx = dropout_backward(dout, cache)
    t_out, (t_dx,) = torch_grads(lambda t: t * noise, [x], dout)
    assert rel_err(out, t_out) <= DROPOUT_TOL and rel_err(dx, t_dx) <= DROPOUT_TOL


@pytest.mark.torch
def test_dropout_scale_matches_nn_dropout():
    """Where nn.Dropout keeps a unit its value is x / (1 - p) exactly as the mask scales it."""
    p = 0.3
    x = np.random.default_rng(5).standard_normal((200, 30))  # N, H
    torch.manual_seed(0)
    t_out = torch.nn.Dropout(p).train()(torch.tensor(x)).numpy()
    kept = t_out != 0
    ours = dropout_forward(x, kept / np.float64(1 - p))[0]
    assert np.array_equal(ours, t_out)


@pytest.mark.torch
def test_dropout_eval_mode_is_the_identity_like_torch():
    x = np.random.default_rng(6).standard_normal((8, 5))
    out, cache = dropout_forward(x, None)
    dx = dropout_backward(x, cache)
    t_out = torch.nn.Dropout(0.5).eval()(torch.tensor(x)).numpy()
    assert np.array_equal(out, x) and np.array_equal(out, t_out) and np.array_equal(dx, x)
    assert not np.shares_memory(out, x) and not np.shares_memory(dx, x)


def test_dropout_backward_matches_finite_differences():
    rng = np.random.default_rng(7)
    x, dout = rng.standard_normal((6, 5)), rng.standard_normal((6, 5))
    mask = dropout_mask(rng, x.shape, 0.4)
    num = numeric_grad(lambda: (dropout_forward(x, mask)[0] * dout).sum(), x)
    assert rel_err(dropout_backward(dout, mask), num) <= FD_TOL


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_keeps_one_minus_p_of_the_units(p):
    n = 400_000
    mask = dropout_mask(np.random.default_rng(8), (n,), p)
    assert set(np.unique(mask)) <= {0.0, 1 / (1 - p)}
    keep_rate = np.count_nonzero(mask) / n
    sigma = np.sqrt(p * (1 - p) / n)  # binomial standard error of the keep rate
    assert abs(keep_rate - (1 - p)) < 5 * sigma, f"keep rate {keep_rate} vs {1 - p}"
    assert abs(mask.mean() - 1) < 5 * sigma / (1 - p)  # inverted dropout keeps E[out] = x


def test_dropout_mask_edges_and_bad_probabilities():
    rng = np.random.default_rng(9)
    assert np.array_equal(dropout_mask(rng, (3, 4), 0.0), np.ones((3, 4)))
    assert np.array_equal(dropout_mask(rng, (3, 4), 1.0), np.zeros((3, 4)))
    assert dropout_mask(rng, (2, 2), 0.5, dtype=np.float32).dtype == np.float32
    for bad in [-0.1, 1.5, float("nan"), "0.5", True]:
        with pytest.raises(InputError, match="between 0 and 1"):
            dropout_mask(rng, (2, 2), bad)
    with pytest.raises(InputError, match="mask has shape"):
        dropout_forward(np.zeros((4, 3)), np.ones((4, 1)))


# ----------------------------------------------------------------------------- batch norm


def make_bn(D, rng):
    bn = torch.nn.BatchNorm1d(D).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(rng.standard_normal(D) + 1))
        bn.bias.copy_(torch.tensor(rng.standard_normal(D)))
    return bn, bn.weight.detach().numpy().copy(), bn.bias.detach().numpy().copy()


def bn_step_pair(bn, x, dout, gamma, beta, running_mean, running_var, train):
    """One forward and backward on both sides; returns the scratch and torch results."""
    bn.train(train)
    bn.zero_grad()
    tx = torch.tensor(x, requires_grad=True)
    t_out = bn(tx)
    (t_out * torch.tensor(dout)).sum().backward()
    out, cache, running_mean, running_var = batchnorm_forward(
        x, gamma, beta, running_mean, running_var, train=train)
    dx, dgamma, dbeta = batchnorm_backward(dout, cache)
    ours = {"out": out, "dx": dx, "dgamma": dgamma, "dbeta": dbeta,
            "running_mean": running_mean, "running_var": running_var,
            # dx cancels terms of size dout * invstd * gamma (to exactly 0 when N = 2)
            "dx_scale": np.abs(dout * cache[3] * gamma).max()}
    theirs = {"out": t_out.detach().numpy(), "dx": tx.grad.numpy(),
              "dgamma": bn.weight.grad.numpy(), "dbeta": bn.bias.grad.numpy(),
              "running_mean": bn.running_mean.numpy(), "running_var": bn.running_var.numpy()}
    return ours, theirs


def assert_close(ours, theirs, tol, where, floors=None):
    for name in theirs:
        err = rel_err(ours[name], theirs[name], (floors or {}).get(name, 0.0))
        assert err <= tol, f"{where}: {name} differs from torch by {err:.2e} (tolerance {tol:.0e})"


@pytest.mark.torch
def test_batchnorm_matches_torch_over_steps_then_in_eval_mode():
    rng = np.random.default_rng(10)
    N, D = 64, 12
    bn, gamma, beta = make_bn(D, rng)
    running_mean, running_var = np.zeros(D), np.ones(D)  # torch's initial buffers
    for step in range(8):
        x = rng.standard_normal((N, D)) * 3 + 2  # N, D   off-centre, so the statistics move
        dout = rng.standard_normal((N, D))  # N, D
        ours, theirs = bn_step_pair(bn, x, dout, gamma, beta, running_mean, running_var, True)
        assert_close(ours, theirs, TORCH_TOL, f"training step {step}")
        running_mean, running_var = ours["running_mean"], ours["running_var"]
    x, dout = rng.standard_normal((N, D)), rng.standard_normal((N, D))
    ours, theirs = bn_step_pair(bn, x, dout, gamma, beta, running_mean, running_var, False)
    assert_close(ours, theirs, TORCH_TOL, "eval mode")
    assert ours["running_mean"] is running_mean and ours["running_var"] is running_var


def test_batchnorm_tracks_the_unbiased_variance_but_normalises_with_the_biased_one():
    x = np.array([[0.0], [2.0]])  # N, D   mean 1, biased var 1, unbiased var 2
    out, _, running_mean, running_var = batchnorm_forward(
        x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1), eps=0.0)
    assert np.allclose(out.ravel(), [-1, 1], rtol=0, atol=1e-15)
    assert running_mean == pytest.approx(0.1) and running_var == pytest.approx(0.9 + 0.1 * 2)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_backward_matches_finite_differences(train):
    rng = np.random.default_rng(11)
    N, D = 6, 4
    x = rng.standard_normal((N, D)) * 2 + 1  # N, D
    gamma, beta = rng.standard_normal(D) + 1, rng.standard_normal(D)  # D
    running_mean, running_var = rng.standard_normal(D), rng.random(D) + 0.5  # D
    dout = rng.standard_normal((N, D))  # N, D

    def loss():
        out = batchnorm_forward(x, gamma, beta, running_mean, running_var, train=train)[0]
        return (out * dout).sum()

    dx, dgamma, dbeta = batchnorm_backward(
        dout, batchnorm_forward(x, gamma, beta, running_mean, running_var, train=train)[1])
    for name, ours, wrt in [("dx", dx, x), ("dgamma", dgamma, gamma), ("dbeta", dbeta, beta)]:
        num = numeric_grad(loss, wrt)
        assert rel_err(ours, num) <= FD_TOL, f"{name}: {rel_err(ours, num):.2e}"


def test_batchnorm_leaves_the_callers_arrays_alone():
    rng = np.random.default_rng(12)
    arrays = [rng.standard_normal((5, 3)), rng.standard_normal(3), rng.standard_normal(3),
              rng.standard_normal(3), rng.random(3) + 0.5]
    copies = [a.copy() for a in arrays]
    out, cache, new_mean, new_var = batchnorm_forward(*arrays)
    batchnorm_backward(rng.standard_normal((5, 3)), cache)
    assert all(np.array_equal(a, c) for a, c in zip(arrays, copies))
    assert not np.shares_memory(new_mean, arrays[3]) and not np.shares_memory(new_var, arrays[4])


@pytest.mark.torch
def test_batchnorm_refuses_a_batch_of_one_in_training_like_torch():
    x = np.ones((1, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(4).double().train()(torch.tensor(x))
    with pytest.raises(InputError, match="more than 1 value per feature"):
        batchnorm_forward(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), train=True)
    out = batchnorm_forward(x, np.ones(4), np.zeros(4), np.zeros(4), np.ones(4), train=False)[0]
    assert out.shape == (1, 4)  # evaluation works on a single example, as in torch


def test_batchnorm_refuses_mismatched_shapes():
    with pytest.raises(InputError, match=r"gamma has shape \(3,\).*shape \(4,\)"):
        batchnorm_forward(np.ones((5, 4)), np.ones(3), np.zeros(4), np.zeros(4), np.ones(4))
    with pytest.raises(InputError, match="2-D input"):
        batchnorm_forward(np.ones(4), np.ones(4), np.zeros(4), np.zeros(4), np.ones(4))


@pytest.mark.torch
@settings(max_examples=40)
@given(n=st.integers(2, 40), d=st.integers(1, 12), steps=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_batchnorm_matches_torch_for_any_batch_and_width(n, d, steps, seed):
    rng = np.random.default_rng(seed)
    bn, gamma, beta = make_bn(d, rng)
    running_mean, running_var = np.zeros(d), np.ones(d)
    for step in range(steps):
        x, dout = rng.standard_normal((n, d)) * 2 + 1, rng.standard_normal((n, d))
        ours, theirs = bn_step_pair(bn, x, dout, gamma, beta, running_mean, running_var, True)
        assert_close(ours, theirs, TORCH_TOL, f"n={n} d={d} step {step}",
                     floors={"dx": ours["dx_scale"]})
        running_mean, running_var = ours["running_mean"], ours["running_var"]
    x, dout = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    ours, theirs = bn_step_pair(bn, x, dout, gamma, beta, running_mean, running_var, False)
    assert_close(ours, theirs, TORCH_TOL, f"n={n} d={d} eval")
