"""Both MLPClassifier twins refuse bad parameters and bad arrays at fit (or predict) time with one
InputError line naming what is wrong and what is allowed, the same words from each twin.

Run: python -m pytest tests/test_estimator_inputs.py -q   (a few seconds; tiny arrays)
"""

import numpy as np
import pytest

from common.errors import InputError
from common.estimator import NotFittedError
from scratch.extras.estimator import MLPClassifier as ScratchMLP

try:  # the torch twin, for the tests marked torch; scratch's run without it (conftest.py)
    from torchimpl.extras.estimator import MLPClassifier as TorchMLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    TorchMLP = None

TWINS = [ScratchMLP, pytest.param(TorchMLP, marks=pytest.mark.torch)]
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(40, 3)), np.repeat([0, 1], 20)

BAD_PARAMETERS = [  # (parameter, value, words of the message)
    ("batch_size", 0, "batch_size must be a whole number from 1"), ("batch_size", 2.5, "batch_size must be"),
    ("optimizer", "foo", "optimizer must be one of sgd, adam, adamw"),
    ("activation", "foo", "activation must be one of relu"),
    ("dtype", "int32", "dtype must be 'float32' or 'float64'"), ("dtype", "foo", "dtype must be 'float32'"),
    ("lr", 0, "lr must be a positive finite number"), ("lr", -1.0, "lr must be"), ("lr", float("nan"), "lr must be"),
    ("lr", float("inf"), "lr must be"), ("lr", "0.1", "lr must be"),
    ("epochs", -1, "epochs must be a whole number from 1"), ("epochs", 1.5, "epochs must be"),
    ("hidden_layer_sizes", (-1,), "hidden_layer_sizes must be a positive whole number or a sequence"),
    ("hidden_layer_sizes", (2.5,), "hidden_layer_sizes must be"), ("hidden_layer_sizes", "12", "hidden_layer_sizes must be"),
    ("hidden_layer_sizes", None, "hidden_layer_sizes must be"),
    ("hidden_layer_sizes", (10**12,), "the network 3-1000000000000-2 needs 21.8 TiB for its float32 parameters; this machine has"),
    ("dropout", 1.0, "dropout must be a number at least 0 and below 1"), ("weight_decay", float("nan"), "weight_decay must"),
    ("random_state", -1, "random_state must be None, a whole number from 0 to 4294967295"),
    ("random_state", 2**32, "random_state must be"), ("random_state", 1.5, "random_state must be"),
]


def refusal(call):
    """The InputError call() raises, checked to be one line."""
    with pytest.raises(InputError) as error:
        call()
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("Estimator", TWINS)
@pytest.mark.parametrize("name, value, words", BAD_PARAMETERS, ids=[f"{n}={v!r}" for n, v, _ in BAD_PARAMETERS])
def test_a_bad_parameter_is_refused_at_fit_in_one_line_naming_it(Estimator, name, value, words):
    model = Estimator(**{"epochs": 1, name: value})  # __init__ stores it unchecked, as scikit-learn's do
    assert getattr(model, name) is value
    assert words in refusal(lambda: model.fit(X, Y))


BAD_ARRAYS = [  # (what, X, y, words)
    ("X with nan", np.where(X > 1, np.nan, X), Y, "X contains NaN or infinity"),
    ("X with inf", np.where(X > 1, np.inf, X), Y, "X contains NaN or infinity"),
    ("X of strings", np.array([["a", "b", "c"]] * 40), Y, "X must hold real numbers: could not convert string"),
    ("X 1-d", X[:, 0], Y, "X must be a 2-d array (samples, features), got shape (40,)"),
    ("X 3-d", X[:, :, None], Y, "X must be a 2-d array"),
    ("X complex", X + 1j, Y, "Complex data not supported"),
    ("y one class", X, np.zeros(40), "at least 2 classes in y, got 1 class"),
    ("y shorter", X, Y[:30], "inconsistent numbers of samples: [40, 30]"),
]


@pytest.mark.parametrize("Estimator", TWINS)
@pytest.mark.parametrize("what, X_bad, y_bad, words", BAD_ARRAYS, ids=[case[0] for case in BAD_ARRAYS])
def test_bad_arrays_are_refused_in_one_line(Estimator, what, X_bad, y_bad, words):
    assert words in refusal(lambda: Estimator(epochs=1).fit(X_bad, y_bad))


@pytest.mark.parametrize("Estimator", TWINS)
def test_predict_before_fit_and_with_the_wrong_features_is_refused(Estimator):
    with pytest.raises(NotFittedError):  # scikit-learn's convention, and an InputError as well
        Estimator().predict(X)
    assert "not fitted yet" in refusal(lambda: Estimator().predict(X))
    model = Estimator(hidden_layer_sizes=(4,), epochs=1, random_state=0).fit(X, Y)
    assert "X has 2 features, but MLPClassifier is expecting 3" in refusal(lambda: model.predict(X[:, :2]))
    assert "X must be a 2-d array" in refusal(lambda: model.predict(X[0]))


@pytest.mark.parametrize("Estimator", TWINS)
def test_no_hidden_layer_is_allowed_as_the_programs_allow_it(Estimator):
    """hidden_layer_sizes=() is a softmax regression, like --hidden with no widths."""
    assert Estimator(hidden_layer_sizes=(), epochs=2, random_state=0).fit(X, Y).predict(X).shape == (40,)


@pytest.mark.torch
def test_both_twins_refuse_with_the_same_words():
    cases = [({name: value}, X, Y) for name, value, _ in BAD_PARAMETERS] + [({}, a, b) for _, a, b, _ in BAD_ARRAYS]
    for params, X_bad, y_bad in cases:
        ours = refusal(lambda: ScratchMLP(**{"epochs": 1, **params}).fit(X_bad, y_bad))
        theirs = refusal(lambda: TorchMLP(**{"epochs": 1, **params}).fit(X_bad, y_bad))
        assert ours == theirs, params
