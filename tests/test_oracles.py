"""Two independent oracles for the hand-written backprop, both in float64.

1. Per layer against torch: each scratch layer function next to its torch counterpart, with
   autograd driven by a random upstream gradient, (out * dout).sum().backward(), never ones
   (a ones gradient can hide a bug whose terms cancel).
2. Central finite differences on the scratch network: no torch at all, only the definition
   of a derivative, (L(p + h) - L(p - h)) / 2h, at a few random entries of every tensor.
Run: python -m pytest tests/test_oracles.py -q
"""

from functools import partial

import numpy as np
import pytest

from scratch import mlp
from scratch.toolbox import model
from scratch.mlp import linear_backward, linear_forward, relu_backward, relu_forward

try:  # oracle 1, the tests marked torch; oracle 2 trusts no torch and runs without it (conftest.py)
    import torch
    from torch.nn import functional as F

    from parity.compare import errors
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = F = errors = None

# One layer in float64: a single BLAS call per output on each side, so a few ulps apart
# (measured at most 1.7e-15); 1e-13 is the parity suite's one-batch float64 bound.
LAYER_TOL = 1e-13

# Central differences: truncation error ~ h^2 |L'''| / 6 (about 1e-10 at h = 1e-5) plus
# roundoff ~ eps |L| / h (2.3 * 1.1e-16 / 1e-5 = 2.5e-11), against a tensor's largest gradient
# of 1e-4..1e-1. Measured on the networks below: at most 1.4e-8 for a parameter, 3.4e-8 for
# dX (input gradients are the smallest, ~1e-4). A smaller h lets roundoff win, a larger one
# steps across ReLU kinks; a wrong formula is off by 1e-2 and more.
FD_STEP = 1e-5
FD_TOL = 1e-7
FD_ENTRIES = 5  # random entries per tensor, plus the entry with the largest gradient


def upstream(rng, shape):
    """A random upstream gradient: every entry different, none equal to one."""
    return rng.standard_normal(shape)


# ----------------------------------------------------------------------------- per layer vs torch


@pytest.mark.torch
@pytest.mark.parametrize("N, D, H", [(1, 1, 1), (1, 7, 3), (64, 784, 128), (65, 64, 10)])
def test_linear_forward_and_backward_match_autograd_with_a_random_upstream_gradient(N, D, H):
    rng = np.random.default_rng(N * 1000 + D + H)
    x, W, b = rng.standard_normal((N, D)), rng.standard_normal((H, D)), rng.standard_normal(H)
    dout = upstream(rng, (N, H))
    out, cache = linear_forward(x, W, b)  # N, H
    dx, dW, db = linear_backward(dout, cache)

    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    out_t = F.linear(xt, Wt, bt)
    (out_t * torch.from_numpy(dout)).sum().backward()
    pairs = [("out", out, out_t), ("dx", dx, xt.grad), ("dW", dW, Wt.grad), ("db", db, bt.grad)]
    for name, ours, theirs in pairs:
        _, rel = errors(ours, theirs.detach().numpy())
        assert rel <= LAYER_TOL, f"linear {name}: relative error {rel:.2e} > {LAYER_TOL:g}"


@pytest.mark.torch
def test_relu_forward_and_backward_match_autograd_including_exact_zeros():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((33, 17))
    x[::3, ::2] = 0.0  # at exactly 0 torch passes no gradient, and neither must scratch
    dout = upstream(rng, x.shape)
    out, cache = relu_forward(x)
    dx = relu_backward(dout, cache)

    xt = torch.tensor(x, requires_grad=True)
    out_t = torch.relu(xt)
    (out_t * torch.from_numpy(dout)).sum().backward()
    assert np.array_equal(out, out_t.detach().numpy())  # max(x, 0) is exact on both sides
    assert np.array_equal(dx, xt.grad.numpy())  # so is the masked copy of dout


@pytest.mark.torch
@pytest.mark.parametrize("N, C, scale", [(1, 1, 1.0), (1, 10, 1.0), (64, 10, 3.0), (65, 7, 1e4)])
def test_softmax_cross_entropy_matches_torch_loss_and_its_gradient(N, C, scale):
    rng = np.random.default_rng(N + C)
    logits, y = scale * rng.standard_normal((N, C)), rng.integers(0, C, N)
    g = float(rng.uniform(0.5, 2.0))  # a random upstream gradient for the scalar loss
    loss, dlogits = mlp.softmax_cross_entropy(logits, y)

    zt = torch.tensor(logits, requires_grad=True)
    loss_t = F.cross_entropy(zt, torch.from_numpy(y))
    (loss_t * g).backward()
    assert errors(loss, loss_t.item())[1] <= LAYER_TOL
    assert errors(g * dlogits, zt.grad.numpy())[1] <= LAYER_TOL


# ----------------------------------------------------------------------------- finite differences


def central_difference_error(loss, value, grad, rng, *, entries, step, scale):
    """The worst |(L(p + h) - L(p - h)) / 2h - grad[i]| / scale, L = loss(), h = step, over the
    entries i of value probed: the one with the largest gradient and `entries` random ones. value
    is moved in place and put back after each entry.

    Shared by the network oracles here and in tests/test_parity_toolbox.py: they differ in the
    loss, the step, the scale and how many entries, so those are arguments.
    """
    def loss_at(i, entry):
        value[i] = entry
        return loss()

    probes = [np.unravel_index(np.abs(grad).argmax(), grad.shape)]
    probes += [tuple(rng.integers(0, n) for n in value.shape) for _ in range(entries)]
    worst = 0.0
    for i in probes:
        saved = value[i]
        numeric = (loss_at(i, saved + step) - loss_at(i, saved - step)) / (2 * step)
        value[i] = saved
        worst = max(worst, abs(numeric - grad[i]) / scale)
    return worst


def network_loss(params, X, y):
    return mlp.softmax_cross_entropy(model.forward(params, X)[0], y)[0]


def finite_difference_errors(sizes, N, seed):
    """{tensor name: normwise error of the hand gradient at sampled entries}, dX included.

    The error at an entry is |numeric - analytic| / max|analytic over the whole tensor|: an
    entry-by-entry ratio would compare two roundoff-sized numbers where the gradient is ~0.
    """
    rng = np.random.default_rng(seed)
    params = model.init_params(sizes, rng, np.float64)
    X, y = rng.random((N, sizes[0])), rng.integers(0, sizes[-1], N)
    logits, caches = model.forward(params, X)
    _, dlogits = mlp.softmax_cross_entropy(logits, y)
    grads, dX = model.backward(dlogits, caches, input_grad=True)
    tensors = {**{name: (params[name], grads[name]) for name in params}, "dX": (X, dX)}
    loss = partial(network_loss, params, X, y)
    return {name: central_difference_error(loss, value, grad, rng, entries=FD_ENTRIES, step=FD_STEP,
                                           scale=np.abs(grad).max())
            for name, (value, grad) in tensors.items()}


@pytest.mark.parametrize("sizes, N, seed", [
    ((784, 128, 64, 10), 16, 0),  # the default network
    ((20, 16, 12, 5), 8, 1),
    ((5, 3, 2), 1, 2),  # a single example
    ((30, 24, 24, 24, 24, 6), 65, 3),  # four hidden layers, a batch of 65
])
def test_network_gradients_match_central_finite_differences(sizes, N, seed):
    found = finite_difference_errors(sizes, N, seed)
    bad = {name: f"{err:.2e}" for name, err in found.items() if not err <= FD_TOL}
    assert not bad, f"hand gradient differs from central differences beyond {FD_TOL:g}: {bad}"
    assert set(found) == {*(f"{k}{i}" for i in range(1, len(sizes)) for k in "Wb"), "dX"}


def test_finite_differences_catch_a_relu_mask_on_the_wrong_side(monkeypatch):
    """The oracle is not blind: with the ReLU gradient let through where x < 0 instead of
    x > 0, every tensor below the first ReLU is far off while the last layer's stays exact."""
    import scratch.mlp

    def wrong_side(dout, x):
        return np.where(x < 0, dout, 0)

    monkeypatch.setattr(scratch.mlp, "relu_backward", wrong_side)
    monkeypatch.setattr(model, "relu_backward", wrong_side, raising=False)  # where model imports it
    if hasattr(model, "ACTIVATIONS"):  # where model looks activations up by name
        monkeypatch.setitem(model.ACTIVATIONS, "relu", (model.ACTIVATIONS["relu"][0], wrong_side))
    found = finite_difference_errors((20, 16, 12, 5), 8, 1)
    assert {name for name, err in found.items() if err > FD_TOL} == {"W1", "b1", "W2", "b2", "dX"}
