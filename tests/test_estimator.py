"""MLPClassifier on both twins: the scikit-learn API, Pipeline and GridSearchCV, MNIST, no nan."""

import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import scratch.train
from common.estimator import HAVE_SKLEARN, NotFittedError
from scratch.data import load_mnist
from scratch.extras.estimator import MLPClassifier as ScratchMLP

try:  # the torch twin, for the tests marked torch; scratch's run without it (conftest.py)
    import torch
    import torchimpl.train as torch_train
    from torchimpl.extras.estimator import MLPClassifier as TorchMLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = torch_train = TorchMLP = None

TWINS = [ScratchMLP, pytest.param(TorchMLP, marks=pytest.mark.torch)]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# scikit-learn is an optional extra: without it the estimators still fit, predict and score
# (the last test shows it), and only the tests of scikit-learn's own tools are skipped.
needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="scikit-learn is not installed (the sklearn extra)")


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def mnist():
    (X, y), (X_test, y_test) = load_mnist(None, "train"), load_mnist(None, "test")
    return (X[:6000], y[:6000]), (X_test[:2000], y_test[:2000])


@pytest.fixture(scope="module")
def blobs():
    """Three well-separated clusters in 4 dimensions, labels as strings."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 4, size=(3, 4))
    labels = rng.integers(0, 3, size=300)
    X = centres[labels] + rng.normal(size=(300, 4))
    return X, np.array(["ant", "bee", "cat"])[labels]


# ----------------------------------------------------------------------------- the API


@pytest.mark.parametrize("Estimator", TWINS)
def test_fit_predict_proba_and_score_on_string_labels(Estimator, blobs):
    X, y = blobs
    model = Estimator(hidden_layer_sizes=(16,), epochs=30, lr=1e-2, random_state=0)
    assert model.fit(X[:200], y[:200]) is model
    assert list(model.classes_) == ["ant", "bee", "cat"] and model.n_features_in_ == 4 and model.n_iter_ == 30
    proba = model.predict_proba(X[200:])
    assert proba.shape == (100, 3) and np.allclose(proba.sum(axis=1), 1) and (proba >= 0).all()
    assert np.array_equal(model.predict(X[200:]), model.classes_[proba.argmax(axis=1)])
    assert model.score(X[200:], y[200:]) > 0.9


@needs_sklearn
@pytest.mark.parametrize("Estimator", TWINS)
def test_get_params_set_params_and_clone(Estimator):
    from sklearn.base import clone

    model = Estimator(hidden_layer_sizes=(8, 4), lr=0.1)
    params = model.get_params()
    assert params["hidden_layer_sizes"] == (8, 4) and params["lr"] == 0.1 and params["optimizer"] == "adam"
    assert model.set_params(epochs=3, dropout=0.1) is model and (model.epochs, model.dropout) == (3, 0.1)
    copy = clone(model)
    assert copy is not model and copy.get_params() == model.get_params()
    with pytest.raises(ValueError, match="Invalid parameter 'width'"):
        model.set_params(width=3)


@pytest.mark.torch
def test_the_twins_take_the_same_parameters_but_the_device():
    ours, theirs = ScratchMLP().get_params(), TorchMLP().get_params()
    assert set(theirs) - set(ours) == {"device"} and set(ours) <= set(theirs)
    assert all(ours[k] == theirs[k] for k in ours)


@pytest.mark.parametrize("Estimator", TWINS)
def test_predicting_before_fit_raises_not_fitted(Estimator):
    with pytest.raises(NotFittedError):
        Estimator().predict(np.zeros((2, 3)))


@pytest.mark.parametrize("Estimator", TWINS)
def test_the_same_random_state_gives_the_same_model_and_leaves_torch_alone(Estimator, blobs):
    X, y = blobs
    before = torch.get_rng_state() if torch else None  # without torch there is no torch state to disturb
    a = Estimator(hidden_layer_sizes=(8,), epochs=3, dropout=0.2, random_state=3).fit(X, y)
    b = Estimator(hidden_layer_sizes=(8,), epochs=3, dropout=0.2, random_state=3).fit(X, y)
    assert torch is None or torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X)) and a.loss_curve_ == b.loss_curve_
    c = Estimator(hidden_layer_sizes=(8,), epochs=3, dropout=0.2, random_state=4).fit(X, y)
    assert a.loss_curve_ != c.loss_curve_


@pytest.mark.parametrize("Estimator", TWINS)
def test_a_fitted_estimator_pickles_and_predicts_the_same(Estimator, blobs):
    X, y = blobs
    model = Estimator(hidden_layer_sizes=(8,), epochs=2, random_state=0).fit(X, y)
    assert np.array_equal(pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("Estimator", TWINS)
def test_bad_input_is_refused_with_scikit_learns_messages(Estimator, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="Unknown label type"):
        Estimator(epochs=1).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="1 class"):
        Estimator(epochs=1).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="NaN"):
        Estimator(epochs=1).fit(np.where(X > 3, np.nan, X), y)
    model = Estimator(hidden_layer_sizes=(4,), epochs=1, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4 features as input"):
        model.predict(X[:, :3])


# ----------------------------------------------------------------------------- scikit-learn's tools


@needs_sklearn
@pytest.mark.parametrize("Estimator", TWINS)
def test_works_inside_a_pipeline_and_a_grid_search(Estimator, mnist):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    (X, y), (X_test, y_test) = mnist
    pipe = make_pipeline(StandardScaler(), Estimator(hidden_layer_sizes=(32,), epochs=2, random_state=0))
    search = GridSearchCV(pipe, {"mlpclassifier__lr": [1e-3, 1e-5]}, cv=2)
    search.fit(X[:2000], y[:2000])
    assert search.best_params_ == {"mlpclassifier__lr": 1e-3}
    assert search.score(X_test, y_test) > 0.7  # 32 steps on 1000 images per fold


@pytest.mark.parametrize("Estimator, program", [(ScratchMLP, scratch.train),
                                                pytest.param(TorchMLP, torch_train, marks=pytest.mark.torch)],
                         ids=["scratch", "torchimpl"])
def test_reaches_the_training_programs_accuracy_on_mnist(Estimator, program, mnist, capsys):
    """The chapter's 784-128-10 with Adam, as the mnist-adam preset runs it, on 4000 images:
    the estimator scores what the training program scores, within the spread of seeds."""
    (X, y), _ = mnist
    model = Estimator(hidden_layer_sizes=(128,), epochs=2, random_state=0).fit(X[:4000], y[:4000])
    assert program.main(["--preset", "mnist-adam", "--limit", "4000", "--epochs", "2", "--json"]) == 0
    program_acc = json.loads(capsys.readouterr().out.splitlines()[-1])["test_acc"]  # on all 10000
    ours = model.score(*load_mnist(None, "test"))
    assert ours > 0.85 and abs(ours - program_acc) < 0.015, (ours, program_acc)


# ----------------------------------------------------------------------------- the skorch trap


@pytest.mark.parametrize("Estimator", TWINS)
def test_losses_stay_finite_on_logits_even_for_raw_0_to_255_pixels(Estimator, mnist):
    """The chapter's skorch run printed nan: its criterion expected probabilities and got
    logits. Cross-entropy on the logits, with the max shift, stays finite even when the inputs
    are the unscaled pixels and the logits run into the thousands."""
    (X, y), _ = mnist
    model = Estimator(hidden_layer_sizes=(64,), epochs=2, random_state=0).fit(X[:2000] * 255, y[:2000])
    assert np.isfinite(model.loss_curve_).all() and model.loss_curve_[-1] < model.loss_curve_[0]
    logits = model.decision_logits(X[:500] * 255)
    assert np.isfinite(model.predict_proba(X[:500] * 255)).all()
    # skorch's trap: NLLLoss after log(output + eps), as if the outputs were probabilities
    with np.errstate(invalid="ignore"):
        trap = -np.log(logits + np.finfo(np.float32).eps)[np.arange(500), y[:500]].mean()
    assert np.isnan(trap) and (logits < 0).any()


@pytest.mark.parametrize("Estimator", TWINS)
def test_a_diverging_fit_stops_with_an_error_instead_of_printing_nan(Estimator, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="the loss is nan; the run diverged, lower the learning rate"):
        Estimator(optimizer="sgd", lr=1e30, epochs=3, random_state=0).fit(X * 1e3, y)


# ----------------------------------------------------------------------------- scikit-learn's own checks


@needs_sklearn
@pytest.mark.parametrize("Estimator", TWINS)
def test_check_estimator_passes(Estimator):
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(Estimator(hidden_layer_sizes=(32,)), on_fail=None)
    failed = {r["check_name"]: str(r["exception"])[:200] for r in results if r["status"] == "failed"}
    assert failed == {}
    assert len([r for r in results if r["status"] == "passed"]) >= 50


@pytest.mark.torch
def test_without_scikit_learn_both_estimators_still_fit_predict_and_score():
    code = """
import sys
sys.modules["sklearn"] = None  # as if scikit-learn were not installed
import numpy as np
from common import estimator
from scratch.extras.estimator import MLPClassifier as A
from torchimpl.extras.estimator import MLPClassifier as B
assert not estimator.HAVE_SKLEARN
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(-2, 1, (50, 3)), rng.normal(2, 1, (50, 3))]); y = np.repeat([3, 7], 50)
for M in (A, B):
    m = M(hidden_layer_sizes=(8,), epochs=20, lr=1e-2, random_state=0)
    assert m.set_params(epochs=25) is m and m.get_params()["epochs"] == 25
    assert m.fit(X, y).score(X, y) > 0.95 and set(m.predict(X)) == {3, 7}
    assert np.allclose(m.predict_proba(X).sum(axis=1), 1)
    for bad in (lambda: M().predict(X), lambda: m.predict(X[:, :2]), lambda: M().fit(X, y * 0.5)):
        try:
            bad()
        except ValueError as err:
            print(type(err).__name__, err)
    print(repr(m))
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}  # both twins in one process
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("_NotFitted this MLPClassifier is not fitted yet")  # a NotFittedError
    assert lines[1] == "InputError X has 2 features, but MLPClassifier is expecting 3 features as input"
    assert lines[2].startswith("InputError Unknown label type: continuous")
    assert lines[3] == "MLPClassifier(epochs=25, hidden_layer_sizes=(8,), lr=0.01, random_state=0)"
