"""Parity for the toolbox under random options, and its verdict on wrong formulas.

- hypothesis: random combinations of activation, batch norm, dropout, loss, optimizer,
  momentum, nesterov, weight decay, widths and batch sizes (2 to 65), two steps through both
  twins, every tensor within its float64 tolerance or a rounding bound. Derandomized
  (tests/conftest.py).
- A wrong formula (batch norm, dropout, AdamW, nesterov, the schedule) fails, naming exactly
  the tensors it breaks; so does training at an unstable lr, with a hint.
Run: python -m pytest tests/test_parity_toolbox_properties.py -q   (about 15 seconds)
"""

import copy

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import scratch.toolbox.layers
import scratch.toolbox.optim
from parity import report, tolerances
from parity.compare import compare_one_batch, compare_training
from parity.run import Config, load_data, run, twins
from parity.steps import draw_masks
from scratch.toolbox import model
from scratch.toolbox.model import Arch
from scratch.toolbox.schedules import CosineAnnealingLR

ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu"]
LOSSES = ["ce", "bce", "bce-logits", "mse"]
SHORT = {"steps": 100, "limit": 1280, "dtypes": ("float64",)}  # 20 batches of 64: 5 epochs


@pytest.fixture(scope="module")
def mnist():
    return load_data(Config(limit=1280))


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


# ----------------------------------------------------------------------------- random combinations

# A tensor that cancels to rounding noise in both twins has no relative accuracy of its own:
# with batch norm on a batch of 2 every normalised value is +-1 whatever the input, so dX and
# every gradient below the first batch norm are zero in exact arithmetic, and so are the
# optimizer buffers built from them. Such a tensor passes if its error is within ROUNDING of
# the largest tensor of its kind in the same check (every gradient, every exp_avg, ...). Each
# entry is a sum of at most 65 products a few layers deep, and batch norm's backward cancels
# terms up to 1/sqrt(eps) = 316 times larger than its result (a batch whose values lie close
# together), so its noise can reach a few thousand ulps of the scale: measured at most
# 1.1e-12 of it (W1 after two SGD steps, over 3000 random examples). Adam then steps on that
# noise: its step lr g / (|g| + eps) moves by up to lr / eps = 1e5 times a change in g, so a
# weight (or a running mean that averages a bias in) may also differ by steps * 1e5 times the
# gradients' rounding bound. A wrong formula is off by 1e-3 of the scale or more.
ROUNDING = 1e-11
ADAM_EPS = 1e-8  # torch's default, and scratch.toolbox.optim.Adam's
EXAMPLES = 300
LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


def kind(name):
    """Records compared against one scale in the rounding bound: d* -> gradient, 'W1 exp_avg' ->
    exp_avg, running_mean1 -> running_mean, W1 -> weight; anything else is its own kind."""
    if name.startswith("d"):
        return "gradient"
    if " " in name and not name.endswith(")"):
        return name.split(" ", 1)[1]
    stem = name.rstrip("0123456789")
    return "weight" if stem in ("W", "b", "gamma", "beta") else stem


def rounding_ratio(record, scales, adam_steps=0, lr=0.0):
    """A failing record's error over its rounding bound (<= 1 is rounding), see ROUNDING."""
    bound = ROUNDING * scales.get((record.check, kind(record.name)), 0.0)
    if kind(record.name) in ("weight", "running_mean"):
        bound += adam_steps * lr / ADAM_EPS * ROUNDING * scales.get(("one batch", "gradient"), 0.0)
    return record.max_abs_err / bound if bound else float("inf")


def beyond_rounding(records, adam_steps=0, lr=0.0):
    """The records that fail their tolerance and are not within their rounding bound."""
    scales = {}
    for r in records:
        if r.scale is not None and np.isfinite(r.scale):
            scales[(r.check, kind(r.name))] = max(scales.get((r.check, kind(r.name)), 0.0), r.scale)
    return [f"{r.check} {r.name}: {r.max_rel_err:.2e} (abs {r.max_abs_err:.1e}) {r.note}" for r in records
            if not r.ok and not rounding_ratio(r, scales, adam_steps, lr) <= 1]


def constant_feature_into_batchnorm(params, buffers, arch, X, masks):
    """True when some batch norm sees a feature that is the same for every row of the batch
    (every unit below it dead or dropped): its output is then beta, exactly on the ReLU's
    kink in one twin and a rounding error either side of it in the other, and which way the
    derivative goes is a convention, not arithmetic."""
    _, caches = model.forward(params, X, arch, copy.deepcopy(buffers), train=True, masks=masks)
    return any(np.ptp(cache[0], axis=0).min() == 0 for kind_, _, cache in caches if kind_ == "batchnorm")


def architectures():
    w = st.integers(2, 16)
    return st.tuples(w, st.lists(w, min_size=1, max_size=3), w).map(lambda t: (t[0], *t[1], t[2]))


options = st.fixed_dictionaries({
    "activation": st.sampled_from(ACTIVATIONS), "batchnorm": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.5]), "loss": st.sampled_from(LOSSES),
    "optimizer": st.sampled_from(["sgd", "adam", "adamw"]), "momentum": st.sampled_from([0.0, 0.9]),
    "nesterov": st.booleans(), "weight_decay": st.sampled_from([0.0, 1e-2]),
})


@settings(max_examples=EXAMPLES)
@given(sizes=architectures(), N=st.integers(2, 65), opts=options, seed=st.integers(0, 2**32 - 1))
def test_two_steps_agree_for_any_combination_of_options_within_tolerance_or_rounding(sizes, N, opts, seed):
    if opts["optimizer"] != "sgd":
        opts["momentum"] = 0.0
    opts["nesterov"] = opts["nesterov"] and opts["momentum"] > 0
    rng = np.random.default_rng(seed)
    arch = Arch(opts["activation"], opts["batchnorm"], opts["dropout"], sigmoid_output=opts["loss"] == "bce")
    params, buffers, net = twins(sizes, "float64", rng, arch)
    X, y = rng.standard_normal((N, sizes[0])), rng.integers(0, sizes[-1], N)
    batches = [np.arange(N), rng.permutation(N)]
    masks = [draw_masks(rng, sizes[1:-1], N, arch.dropout, np.float64) for _ in batches]
    assume(not constant_feature_into_batchnorm(params, buffers, arch, X, masks[0]))
    records = compare_one_batch(params, net, X, y, tolerances.F64_ONE_BATCH, arch=arch, buffers=buffers,
                                masks=masks[0], loss=opts["loss"])
    sgd = opts["optimizer"] == "sgd"
    trained, _ = compare_training(
        params, net, X, y, batches, LR[opts["optimizer"]],
        tolerances.F64_TRAINING if sgd else tolerances.F64_ADAM_TRAINING, arch=arch, buffers=buffers,
        masks=masks, loss=opts["loss"], optimizer=opts["optimizer"], momentum=opts["momentum"],
        nesterov=opts["nesterov"], weight_decay=opts["weight_decay"],
        noise_tolerance=tolerances.F64_TRAINING if sgd else tolerances.F64_NOISE_DRIVEN)
    bad = beyond_rounding(records + trained, 0 if sgd else len(batches), LR[opts["optimizer"]])
    assert not bad, (bad, sizes, N, opts)

# ----------------------------------------------------------------------------- a wrong formula fails

BATCHNORM_FORWARD, BATCHNORM_BACKWARD = scratch.toolbox.layers.batchnorm_forward, scratch.toolbox.layers.batchnorm_backward
DROPOUT_BACKWARD = scratch.toolbox.layers.dropout_backward


def without_the_variance_term(dout, cache):
    """batch norm's dx without - (x - mean) invstd^2 mean(dout (x - mean)): right for dgamma,
    dbeta, wrong for everything below."""
    x, gamma, mean, invstd, train = cache
    dx, dgamma, dbeta = BATCHNORM_BACKWARD(dout, cache)
    return (dout - dbeta / len(x)) * invstd * gamma, dgamma, dbeta


def dgamma_without_invstd(dout, cache):
    x, gamma, mean, invstd, train = cache
    dx, dgamma, dbeta = BATCHNORM_BACKWARD(dout, cache)
    return dx, dgamma / invstd, dbeta


def running_var_biased(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5, train=True):
    """Tracks the biased batch variance (/ N) instead of torch's unbiased one (/ (N - 1))."""
    out, cache, mean, var = BATCHNORM_FORWARD(x, gamma, beta, running_mean, running_var, momentum, eps, train)
    if train:
        N = len(x)
        var = (var - (1 - momentum) * running_var) * (N - 1) / N + (1 - momentum) * running_var
    return out, cache, mean, var


def dropout_backward_without_the_mask(dout, cache):
    return np.array(dout, copy=True)


def one_batch_failures(result):
    return {r.name for r in result.records if r.check == "one batch" and not r.ok}


@pytest.mark.parametrize("wrong, options, named", [
    (("batchnorm_backward", without_the_variance_term), {"batchnorm": True},
     {"dW1", "dgamma1", "dbeta1", "dW2", "dX"}),  # db1, db2 stay 0: the batch mean still cancels
    (("batchnorm_backward", dgamma_without_invstd), {"batchnorm": True}, {"dgamma1", "dgamma2"}),
    (("batchnorm_forward", running_var_biased), {"batchnorm": True},
     {"running_var1", "running_var2", "outputs (eval mode)"}),  # training-mode tensors stay exact
    (("dropout_backward", dropout_backward_without_the_mask), {"dropout": 0.2},
     {"dW1", "db1", "dW2", "db2", "dX"}),
], ids=["batchnorm dx without a term", "dgamma without invstd", "biased running_var", "dropout mask ignored"])
def test_a_wrong_layer_formula_fails_naming_exactly_the_tensors_it_breaks(wrong, options, named, mnist,
                                                                         monkeypatch):
    monkeypatch.setattr(scratch.toolbox.layers, *wrong)
    (result,) = run(Config(steps=5, dtypes=("float64",), **options), mnist)
    assert one_batch_failures(result) == named and not result.ok


def test_coupled_weight_decay_in_adamw_fails_naming_weights_and_moments(mnist, monkeypatch):
    monkeypatch.setattr(scratch.toolbox.optim.AdamW, "decoupled_weight_decay", False)  # Adam's L2 instead
    (result,) = run(Config(steps=5, dtypes=("float64",), optimizer="adamw"), mnist)
    failed = {r.name for r in result.records if not r.ok}
    assert one_batch_failures(result) == set()  # gradients are not the optimizer's business
    assert {"W1", "b3", "W1 exp_avg", "W1 exp_avg_sq"} <= failed


def test_nesterov_ignored_fails_naming_the_weights(mnist, monkeypatch):
    init = scratch.toolbox.optim.SGD.__init__

    def plain_momentum(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        init(self, params, lr, momentum, dampening, weight_decay)  # nesterov dropped on the floor

    monkeypatch.setattr(scratch.toolbox.optim.SGD, "__init__", plain_momentum)
    (result,) = run(Config(steps=5, dtypes=("float64",), momentum=0.9, nesterov=True, lr=0.05), mnist)
    failed = {r.name for r in result.records if not r.ok}
    assert {"W1", "b1", "W2", "b2", "W3", "b3"} <= failed and "W1 momentum_buffer" in failed


def test_a_wrong_schedule_fails_naming_the_lr(mnist, monkeypatch):
    def halve(self):  # not the cosine at all
        self.optimizer.lr /= 2

    monkeypatch.setattr(CosineAnnealingLR, "step", halve)
    (result,) = run(Config(**SHORT, schedule="cosine"), mnist)
    failed = {r.name for r in result.records if not r.ok}
    assert "lr (every step)" in failed and "W1" in failed and one_batch_failures(result) == set()


def test_unstable_momentum_at_lr_05_fails_with_a_hint_to_lower_the_lr(mnist):
    (result,) = run(Config(steps=200, dtypes=("float64",), momentum=0.9), mnist)  # lr 0.5: chaotic
    assert not result.ok and one_batch_failures(result) == set()
    assert "try a lower --lr" in report.summary([result])
