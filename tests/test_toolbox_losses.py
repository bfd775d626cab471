"""scratch/toolbox/losses.py's BCE, BCE-with-logits and MSE against nn.BCELoss, nn.BCEWithLogitsLoss,
nn.MSELoss (float64) and against central finite differences; and their refusals of bad input.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import InputError
from scratch.toolbox.losses import binary_cross_entropy, binary_cross_entropy_with_logits, mse

try:  # the oracle of the tests marked torch; the finite-difference tests run without it (conftest.py)
    import torch
    import torch.nn.functional as F
except ModuleNotFoundError:
    torch = F = None

# float64 against torch: losses are means, and torch and NumPy sum in different orders (and
# torch's SIMD exp differs from NumPy's in the last bit), so the two agree to a few ulps, about
# 1e-16 relative. 1e-13 leaves a wide margin yet fails on any formula difference.
TORCH_TOL = 1e-13
# Central differences in float64, step 1e-6: about 1e-9 relative error; 1e-7 is the usual bar.
FD_TOL = 1e-7
FD_STEP = 1e-6

LOSSES = {  # torch's function looked up when called: scratch's tests run without torch
    "binary_cross_entropy": (binary_cross_entropy, lambda p, t: F.binary_cross_entropy(p, t)),
    "binary_cross_entropy_with_logits": (binary_cross_entropy_with_logits,
                                         lambda p, t: F.binary_cross_entropy_with_logits(p, t)),
    "mse": (mse, lambda p, t: F.mse_loss(p, t)),
}


def rel_err(a, b):
    """Normwise relative error max|a - b| / max|b| (DESIGN.md section 4)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.abs(b).max()
    return np.abs(a - b).max() / scale if scale else np.abs(a - b).max()


def torch_loss_and_grad(torch_fn, pred, target):
    tp = torch.tensor(pred, dtype=torch.float64, requires_grad=True)
    loss = torch_fn(tp, torch.tensor(target, dtype=torch.float64))
    loss.backward()
    return loss.item(), tp.grad.numpy()


def inputs_for(name, rng, shape, scale=3.0):
    """Predictions in each loss's domain, and targets in [0, 1]."""
    raw = rng.standard_normal(shape) * scale
    pred = 1 / (1 + np.exp(-raw)) if name == "binary_cross_entropy" else raw
    return pred, rng.random(shape)


def assert_matches_torch(name, pred, target):
    ours, theirs = LOSSES[name]
    loss, dpred = ours(pred, target)
    t_loss, t_dpred = torch_loss_and_grad(theirs, pred, target)
    assert rel_err(loss, t_loss) <= TORCH_TOL, f"{name} loss: {loss!r} vs torch {t_loss!r}"
    assert rel_err(dpred, t_dpred) <= TORCH_TOL, f"{name} gradient: {rel_err(dpred, t_dpred):.2e}"
    return loss, dpred


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(64,), (64, 1), (32, 5)])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_and_gradient_match_torch(name, shape):
    pred, target = inputs_for(name, np.random.default_rng(0), shape)
    assert_matches_torch(name, pred, target)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(name):
    ours, _ = LOSSES[name]
    pred, target = inputs_for(name, np.random.default_rng(1), (6, 3), scale=1.5)
    dpred = ours(pred, target)[1]
    num = np.zeros_like(pred)
    for i in np.ndindex(pred.shape):
        bumped = [pred.copy(), pred.copy()]
        bumped[0][i] += FD_STEP
        bumped[1][i] -= FD_STEP
        num[i] = (ours(bumped[0], target)[0] - ours(bumped[1], target)[0]) / (2 * FD_STEP)
    assert rel_err(dpred, num) <= FD_TOL, f"{name}: {rel_err(dpred, num):.2e}"


@pytest.mark.torch
def test_bce_clamps_the_log_at_minus_100_like_torch():
    """p = 0 with y = 1 (or p = 1 with y = 0) costs 100, not inf; the gradient stays finite."""
    probs = np.array([0.0, 1.0, 0.0, 1.0, 0.5, 1e-300])
    targets = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 1.0])
    loss, dprobs = assert_matches_torch("binary_cross_entropy", probs, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(dprobs))
    per_element = binary_cross_entropy(probs[:1], targets[:1])[0]
    assert per_element == 100.0


@pytest.mark.torch
@pytest.mark.parametrize("big", [1e4, 1e3, 800.0, 50.0])
def test_bce_with_logits_is_stable_for_huge_logits(big):
    logits = np.array([big, -big, big, -big, 0.0, 3.0])
    targets = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.2])
    loss, dlogits = assert_matches_torch("binary_cross_entropy_with_logits", logits, targets)
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    # confidently right costs ~0, confidently wrong costs |x|; the gradient saturates at +-1/size
    assert loss == pytest.approx((2 * big + np.log(2) + binary_cross_entropy_with_logits(
        logits[5:], targets[5:])[0]) / 6, rel=1e-12)
    assert np.allclose(dlogits[:4], np.array([0.0, 0.0, 1.0, -1.0]) / 6, rtol=0, atol=1e-15)


def test_losses_leave_their_inputs_alone():
    rng = np.random.default_rng(2)
    for name, (ours, _) in LOSSES.items():
        pred, target = inputs_for(name, rng, (7, 2))
        pred0, target0 = pred.copy(), target.copy()
        ours(pred, target)
        assert np.array_equal(pred, pred0) and np.array_equal(target, target0), name


@pytest.mark.parametrize("name", LOSSES)
def test_mismatched_shapes_are_refused_not_broadcast(name):
    ours, _ = LOSSES[name]
    pred, _ = inputs_for(name, np.random.default_rng(3), (100, 1))
    with pytest.raises(InputError, match=r"\(100, 1\).*\(100,\).*broadcast them to \(100, 100\)"):
        ours(pred, np.zeros(100))
    with pytest.raises(InputError, match=r"predictions have shape \(4,\) but targets have \(5,\)"):
        ours(pred[:4, 0], np.zeros(5))


def test_bce_refuses_values_outside_zero_one():
    with pytest.raises(InputError, match="probabilities between 0 and 1"):
        binary_cross_entropy(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="probabilities between 0 and 1"):
        binary_cross_entropy(np.array([0.5, np.nan]), np.array([0.0, 1.0]))
    with pytest.raises(InputError, match="targets between 0 and 1"):
        binary_cross_entropy(np.array([0.5, 0.5]), np.array([0.0, 2.0]))


@pytest.mark.torch
@settings(max_examples=40)
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
       scale=st.sampled_from([0.1, 2.0, 40.0]), seed=st.integers(0, 2**16))
def test_losses_match_torch_for_any_shape(shape, scale, seed):
    rng = np.random.default_rng(seed)
    for name in LOSSES:
        pred, target = inputs_for(name, rng, tuple(shape), scale)  # at scale 40 some p = 0 or 1
        assert_matches_torch(name, pred, target)
