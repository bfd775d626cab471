"""Unit tests of the hand-written pieces: layers, loss, initialisation, model, SGD.

Parity with torch, tensor by tensor, is tested in the parity suite; here each piece is held to
numbers worked out by hand and to the shapes and invariants it promises.
"""

import math

import numpy as np
import pytest

from common.errors import InputError
from scratch.mlp import linear_backward, linear_forward, relu_backward, relu_forward
from scratch.mlp import softmax_cross_entropy
from scratch.toolbox.losses import cross_entropy
from scratch.toolbox.model import backward, count_params, forward, init_params, layer_sizes_of, predict
from scratch.toolbox.optim import SGD

try:  # the torch twin, for the tests marked torch; the others run without it (conftest.py)
    import torch
    from torch import nn

    from torchimpl.toolbox.model import MLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = nn = MLP = None

ARCHITECTURES = [[784, 128, 64, 10], [25, 16, 8, 2], [784, 10]]

# ----------------------------------------------------------------------------- layers


def test_linear_shapes_follow_nn_linear_layout():
    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)), rng.normal(size=4)
    out, cache = linear_forward(x, W, b)
    assert out.shape == (5, 4) and np.allclose(out, x @ W.T + b, rtol=0, atol=0)
    dx, dW, db = linear_backward(np.ones((5, 4)), cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db.shape == b.shape
    assert np.array_equal(db, np.full(4, 5.0))  # a ones gradient sums to the batch size


def test_relu_backward_blocks_the_gradient_at_and_below_zero_without_touching_dout():
    x = np.array([[-1.0, 0.0, 2.0]])
    out, cache = relu_forward(x)
    dout = np.array([[3.0, 4.0, 5.0]])
    dx = relu_backward(dout, cache)
    assert np.array_equal(out, [[0.0, 0.0, 2.0]]) and np.array_equal(dx, [[0.0, 0.0, 5.0]])
    assert np.array_equal(dout, [[3.0, 4.0, 5.0]])  # the caller's array is left alone


# ----------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_matches_a_value_worked_by_hand():
    # logits (1, 2, 3), label 2: loss = log(e^1 + e^2 + e^3) - 3 = log(1 + e^-1 + e^-2)
    loss, dlogits = softmax_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([2]))
    assert loss == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-15)
    softmax = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    # The gradient is computed as exp(log-softmax), like torch's backward, not as e^z / sum e^z:
    # the two roundings differ by a few units in the last place (ulp of 0.33 is 5.6e-17).
    assert np.allclose(dlogits, [softmax - [0, 0, 1]], rtol=0, atol=4 * 5.6e-17)


def test_softmax_cross_entropy_is_the_batch_mean():
    loss, dlogits = softmax_cross_entropy(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    assert loss == pytest.approx(math.log(2), rel=1e-15)  # each row: uniform over two classes
    assert np.allclose(dlogits, np.array([[-0.5, 0.5], [0.5, -0.5]] * 2) / 4, atol=1e-17)


def test_softmax_cross_entropy_stays_finite_for_huge_logits():
    loss, dlogits = softmax_cross_entropy(np.array([[1e4, -1e4], [-1e4, 1e4]]), np.array([1, 1]))
    assert loss == pytest.approx(1e4)  # row 0 pays 2e4, row 1 pays 0: mean 1e4
    assert np.isfinite(dlogits).all()
    assert np.array_equal(dlogits, [[0.5, -0.5], [0.0, 0.0]])


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 3]), r"labels must lie in \[0, 3\), found 3"),
    (np.array([-1, 0]), r"labels must lie in \[0, 3\), found -1"),
    (np.array([0.0, 1.0]), "labels must be integer class indices"),
    (np.array([0, 1, 2]), r"labels must have shape \(2,\)"),
])
def test_cross_entropy_refuses_bad_labels(labels, message):
    with pytest.raises(InputError, match=message):
        cross_entropy(np.zeros((2, 3)), labels)


# ----------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_init_params_has_nn_linear_shapes_and_bounds(sizes):
    params = init_params(sizes, np.random.default_rng(0))
    assert list(params) == [f"{k}{i}" for i in range(1, len(sizes)) for k in "Wb"]
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        assert W.shape == (fan_out, fan_in) and b.shape == (fan_out,) and W.dtype == np.float32
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    assert layer_sizes_of(params) == sizes


def _ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    return np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max()


@pytest.mark.torch
def test_init_weights_are_distributed_as_nn_linear_draws_them():
    fan_in, fan_out = 784, 256
    ours = init_params([fan_in, fan_out], np.random.default_rng(0), np.float64)["W1"].ravel()
    torch.manual_seed(0)
    theirs = nn.Linear(fan_in, fan_out).weight.detach().double().numpy().ravel()
    # Both should be U(-1/28, 1/28). The KS critical value at significance 1e-6 for two samples
    # of n = 200,704 is sqrt(-ln(0.5e-6) / 2) * sqrt(2 / n) = 0.0085; the draws are seeded.
    assert _ks_statistic(ours, theirs) < 0.0085
    bound = 1 / math.sqrt(fan_in)
    for sample in (ours, theirs):
        assert abs(sample.std() - bound / math.sqrt(3)) < 0.01 * bound  # uniform: std = bound/sqrt 3
        assert sample.min() > -bound and sample.max() < bound and sample.min() < -0.999 * bound


@pytest.mark.torch
@pytest.mark.parametrize("bad", [[784], [784, 0, 10], [784, -5, 10], [784, 2.5, 10]])
def test_layer_widths_must_be_positive_whole_numbers(bad):
    with pytest.raises(InputError, match="positive whole number|at least an input"):
        init_params(bad, np.random.default_rng(0))
    with pytest.raises(InputError, match="positive whole number"):
        MLP(bad)


@pytest.mark.torch
def test_parameter_count_is_the_chapters_109386_on_both_twins():
    params = init_params([784, 128, 64, 10], np.random.default_rng(0))
    assert count_params(params) == 109386
    assert sum(p.numel() for p in MLP([784, 128, 64, 10]).parameters()) == 109386


# ----------------------------------------------------------------------------- model


@pytest.mark.parametrize("sizes", ARCHITECTURES)
def test_forward_and_backward_shapes_for_any_depth(sizes):
    rng = np.random.default_rng(1)
    params = init_params(sizes, rng)
    X = rng.random((7, sizes[0]), dtype=np.float32)
    logits, caches = forward(params, X)
    assert logits.shape == (7, sizes[-1]) and logits.dtype == np.float32
    grads, dX = backward(rng.normal(size=logits.shape).astype(np.float32), caches, input_grad=True)
    assert set(grads) == set(params)  # one gradient per parameter, whatever the order
    assert all(grads[k].shape == params[k].shape for k in params) and dX.shape == X.shape
    assert predict(params, X).shape == (7,)


@pytest.mark.torch
def test_input_width_must_match_the_first_layer_on_both_twins():
    params = init_params([784, 10], np.random.default_rng(0))
    with pytest.raises(InputError, match=r"inputs have shape \(2, 783\) but the first layer expects \(N, 784\)"):
        forward(params, np.zeros((2, 783), np.float32))
    with pytest.raises(InputError, match=r"inputs have shape \(2, 783\) but the first layer expects \(N, 784\)"):
        MLP([784, 10])(torch.zeros(2, 783))


def test_forward_refuses_inputs_of_another_dtype():
    params = init_params([4, 2], np.random.default_rng(0))
    with pytest.raises(InputError, match="inputs are float64 but the parameters are float32"):
        forward(params, np.zeros((1, 4)))


@pytest.mark.torch
def test_torch_mlp_equals_the_plain_sequential_form():
    torch.manual_seed(0)
    model = MLP([25, 16, 8, 2])
    plain = nn.Sequential(nn.Linear(25, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    plain.load_state_dict({k.removeprefix("net."): v for k, v in model.state_dict().items()})
    x = torch.randn(9, 25)
    assert torch.equal(model(x), plain(x))


# ----------------------------------------------------------------------------- SGD


def test_sgd_step_is_p_minus_lr_times_grad_in_place():
    params = {"W1": np.array([1.0, 2.0])}
    array = params["W1"]
    SGD(params, lr=0.1).step({"W1": np.array([0.5, -1.0])})
    assert params["W1"] is array  # updated in place, as torch updates param.data
    assert np.array_equal(array, [1.0 - 0.1 * 0.5, 2.0 + 0.1 * 1.0])


def test_sgd_momentum_keeps_the_learning_rate_outside_the_buffer():
    params = {"W1": np.array([1.0])}
    opt = SGD(params, lr=0.1, momentum=0.9)
    opt.step({"W1": np.array([2.0])})  # first step: buf = g = 2
    opt.step({"W1": np.array([2.0])})  # then buf = 0.9 * 2 + 2 = 3.8
    assert opt.state["W1"][0] == pytest.approx(3.8)
    assert params["W1"][0] == pytest.approx(1.0 - 0.1 * 2.0 - 0.1 * 3.8)


def test_sgd_refuses_a_non_positive_learning_rate():
    with pytest.raises(InputError, match="learning rate must be positive"):
        SGD({}, lr=0.0)
