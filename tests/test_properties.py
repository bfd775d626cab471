"""Property tests: the twins agree for any architecture, batch, input, label and upstream gradient.

hypothesis draws the shapes (1 to 4 hidden layers of width 1 to 64, batches of 1 to 65, so
single examples and partial last batches) and a seed; NumPy's generator draws the numbers from
the seed, so inputs are continuous and no ReLU input sits exactly on its kink by accident. The
profile in tests/conftest.py is derandomized: every run draws the same examples.
Run: python -m pytest tests/test_properties.py -q
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import tolerances
from parity.compare import compare_one_batch, compare_training
from parity.convert import parameters_by_scratch_name
from parity.run import batch_sequence, full_precision_one_thread, twins
from scratch.toolbox import model
from scratch.mlp import linear_backward, linear_forward, relu_backward, relu_forward

EXAMPLES = settings(max_examples=200)
widths = st.integers(1, 64)
batch_sizes = st.integers(1, 65)
seeds = st.integers(0, 2**32 - 1)


def architectures(min_width=1):
    """(D, H_1, ..., H_k, C) with 1 to 4 hidden layers."""
    w = st.integers(min_width, 64)
    return st.tuples(w, st.lists(w, min_size=1, max_size=4), w).map(lambda t: (t[0], *t[1], t[2]))


# Rounding bound for float64 against the magnitude of what was summed: each entry is a sum of
# at most 65 products (a batch, or a layer of 64 inputs plus a bias) per layer, up to 5 layers
# deep forward and again backward, so |scratch - torch| <= ~10 * 65 * 1.1e-16 = 7e-14 of the
# magnitude at the very worst; measured at most 4e-16 over 300 random networks.
MAGNITUDE_TOL = 1e-13


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Thousands of tiny matmuls: thread pools only add contention (see parity.run)."""
    with full_precision_one_thread():
        yield


def data(rng, sizes, N, dtype="float64"):
    """N random inputs (N, D) and labels (N,) in [0, C)."""
    return rng.standard_normal((N, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], N)


def failing(records):
    """The records out of tolerance, each bias gradient measured against its layer.

    db_i is a sum over the batch that can cancel to almost nothing: with two classes the last
    one is [s, -s], and s = mean(p - onehot) came out 1e-5 on one drawn batch, where float32
    rounding of its 0.5-sized terms is 1e-8 and so 1e-3 of s. Such a sum has no relative accuracy
    of its own, so its error is divided by the largest entry of (dW_i, db_i) together, the
    layer's gradient as one vector (parity does the same for a bias ahead of batch norm).
    """
    scales = {r.name: r.scale for r in records}
    bad = []
    for r in records:
        error = r.max_rel_err
        if r.name.startswith("db") and f"dW{r.name[2:]}" in scales:
            scale = max(scales[r.name], scales[f"dW{r.name[2:]}"])
            error = r.max_abs_err / scale if scale else (0.0 if r.max_abs_err == 0 else float("inf"))
        if not error <= r.tolerance:
            bad.append(f"{r.name}: {error:.2e} > {r.tolerance:g} {r.note}")
    return bad


def magnitudes(params, X, dout):
    """Forward and backward of the network recomputed on absolute values, with the real ReLU
    masks: {"logits": ..., "dW1": ..., "dX": ...}. A computed sum s of K terms is within
    about K eps times this magnitude of the exact sum, however much s cancels (Higham, Accuracy
    and Stability of Numerical Algorithms, 3.1), so errors are measured against it: a normwise
    relative error has no meaning for a one-entry tensor whose sum cancels to almost nothing.
    """
    n = len(params) // 2
    h, H, hs, masks = X, np.abs(X), [np.abs(X)], []  # N, D
    for i in range(1, n + 1):
        W, b = params[f"W{i}"], params[f"b{i}"]
        z, Z = h @ W.T + b, H @ np.abs(W).T + np.abs(b)  # N, H_i
        if i < n:
            masks.append(z > 0)
            h, H = z * masks[-1], Z * masks[-1]
            hs.append(H)
    found, G = {"logits": Z}, np.abs(dout)  # N, C
    for i in range(n, 0, -1):
        found[f"dW{i}"], found[f"db{i}"] = G.T @ hs[i - 1], G.sum(axis=0)
        G = G @ np.abs(params[f"W{i}"])  # N, H_{i-1}
        if i > 1:
            G = G * masks[i - 2]
    found["dX"] = G
    return found


def magnitude_error(ours, theirs, magnitude):
    """max over entries of |a - b| / magnitude; entries of magnitude 0 are exact sums of zeros."""
    diff = np.abs(np.asarray(ours) - np.asarray(theirs))
    if np.any(diff[magnitude == 0] != 0):
        return float("inf")
    return float((diff[magnitude > 0] / magnitude[magnitude > 0]).max(initial=0.0))


# ----------------------------------------------------------------------------- layers


@EXAMPLES
@given(N=batch_sizes, D=widths, H=widths, seed=seeds)
def test_linear_and_relu_match_autograd_for_any_shape_and_upstream_gradient(N, D, H, seed):
    rng = np.random.default_rng(seed)
    x, W, b = rng.standard_normal((N, D)), rng.standard_normal((H, D)), rng.standard_normal(H)
    dout = rng.standard_normal((N, H))  # N, H   random upstream gradient
    z, linear_cache = linear_forward(x, W, b)  # N, H
    a, relu_cache = relu_forward(z)
    dx, dW, db = linear_backward(relu_backward(dout, relu_cache), linear_cache)

    xt, Wt, bt = (torch.tensor(v, requires_grad=True) for v in (x, W, b))
    a_t = torch.relu(torch.nn.functional.linear(xt, Wt, bt))
    (a_t * torch.from_numpy(dout)).sum().backward()
    mask = z > 0
    G = np.abs(dout) * mask  # N, H   magnitude of the gradient that passes the ReLU
    expected = {"out": (a, a_t, (np.abs(x) @ np.abs(W).T + np.abs(b)) * mask),
                "dx": (dx, xt.grad, G @ np.abs(W)), "dW": (dW, Wt.grad, G.T @ np.abs(x)),
                "db": (db, bt.grad, G.sum(axis=0))}
    for name, (ours, theirs, magnitude) in expected.items():
        err = magnitude_error(ours, theirs.detach().numpy(), magnitude)
        assert err <= MAGNITUDE_TOL, f"{name}: {err:.2e}"


# ----------------------------------------------------------------------------- the network


@EXAMPLES
@given(sizes=architectures(), N=batch_sizes, seed=seeds)
def test_network_backward_matches_autograd_for_any_architecture_and_upstream_gradient(sizes, N, seed):
    rng = np.random.default_rng(seed)
    params, _, net = twins(sizes, "float64", rng)
    X, _ = data(rng, sizes, N)
    dout = rng.standard_normal((N, sizes[-1]))  # N, C   random upstream gradient on the logits
    logits, caches = model.forward(params, X)
    grads, dX = model.backward(dout, caches, input_grad=True)

    x = torch.from_numpy(X).requires_grad_(True)
    logits_t = net(x)
    (logits_t * torch.from_numpy(dout)).sum().backward()
    ours = {"logits": logits, "dX": dX, **{f"d{name}": g for name, g in grads.items()}}
    theirs = {"logits": logits_t, "dX": x.grad,
              **{f"d{name}": p.grad for name, p in parameters_by_scratch_name(net).items()}}
    bounds = magnitudes(params, X, dout)
    assert set(ours) == set(theirs) == set(bounds)
    for name, magnitude in bounds.items():
        err = magnitude_error(ours[name], theirs[name].detach().numpy(), magnitude)
        assert err <= MAGNITUDE_TOL, f"{name}: {err:.2e} for {sizes}, batch {N}"


# The suite's own comparison, normwise relative per tensor, on any architecture whose layers
# have two units or more: a one-entry tensor (db of a one-unit layer) is a single sum, and a
# sum that cancels has no relative accuracy; width 1 is covered by the two tests above.

@EXAMPLES
@given(sizes=architectures(min_width=2), N=batch_sizes, seed=seeds)
def test_one_batch_with_cross_entropy_agrees_in_float64_for_any_architecture(sizes, N, seed):
    rng = np.random.default_rng(seed)
    params, _, net = twins(sizes, "float64", rng)
    X, y = data(rng, sizes, N)
    records = compare_one_batch(params, net, X, y, tolerances.F64_ONE_BATCH)
    assert not failing(records), failing(records)
    assert len(records) == 3 + 2 * (len(sizes) - 1)  # logits, loss, dX and dW_i, db_i per layer


@EXAMPLES
@given(sizes=architectures(min_width=2), N=batch_sizes, seed=seeds)
def test_one_batch_agrees_within_the_float32_bound_for_any_architecture(sizes, N, seed):
    rng = np.random.default_rng(seed)
    params, _, net = twins(sizes, "float32", rng)
    X, y = data(rng, sizes, N, "float32")
    records = compare_one_batch(params, net, X, y, tolerances.F32_ONE_BATCH)
    assert not failing(records), failing(records)


@EXAMPLES
@given(sizes=architectures(min_width=2), n=st.integers(1, 130), batch_size=batch_sizes, seed=seeds,
       momentum=st.sampled_from([0.0, 0.9]))
def test_sgd_steps_agree_in_float64_for_any_architecture_and_partial_batches(sizes, n, batch_size, seed,
                                                                             momentum):
    rng = np.random.default_rng(seed)
    params, _, net = twins(sizes, "float64", rng)
    X, y = data(rng, sizes, n)
    batches = batch_sequence(n, batch_size, 4, rng)  # 4 steps, crossing an epoch when n is small
    records, drift = compare_training(params, net, X, y, batches, lr=0.1, momentum=momentum,
                                      tolerance=tolerances.F64_TRAINING)
    assert not failing(records), failing(records)
    assert [d["step"] for d in drift] == [4]


@EXAMPLES
@given(n=st.integers(1, 300), batch_size=batch_sizes, steps=st.integers(1, 40), seed=seeds)
def test_batch_sequence_visits_every_example_once_per_epoch(n, batch_size, steps, seed):
    batches = batch_sequence(n, batch_size, steps, np.random.default_rng(seed))
    assert len(batches) == steps
    per_epoch = math.ceil(n / batch_size)  # the last batch of an epoch keeps the remainder
    for start in range(0, steps - per_epoch + 1, per_epoch):  # every complete epoch
        epoch = np.concatenate(batches[start:start + per_epoch])
        assert np.array_equal(np.sort(epoch), np.arange(n))
    assert all(1 <= len(b) <= batch_size for b in batches)
