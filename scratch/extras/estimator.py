"""A scikit-learn style classifier on the NumPy twin: MLPClassifier().fit(X, y).predict(X).

Twin: torchimpl/extras/estimator.py. fit trains the hand-written network of scratch/toolbox/model.py with
scratch/train.py's train_epoch; the loss is always softmax cross-entropy on the logits, which
is where the day-one chapter's skorch run went wrong: its criterion expected probabilities,
got raw logits, and printed nan losses at 10% accuracy. loss_curve_ keeps every epoch's mean
training loss, and a non-finite loss stops fit with an error instead of training on. With
scikit-learn installed it is a BaseEstimator (Pipeline, GridSearchCV, clone); without, it
still fits, predicts and scores. Try it:
    python -c "from scratch.extras.estimator import MLPClassifier; from scratch.data import load_mnist;
    X, y = load_mnist(); model = MLPClassifier(epochs=1, random_state=0).fit(X[:5000], y[:5000]);
    print(model.score(X[5000:6000], y[5000:6000]))"
"""

import math
import numbers

import numpy as np

from common import estimator as base
from common.cli import ACTIVATIONS, EVAL_BATCH, MOST_FLOAT, MOST_INT, MOST_SEED, OPTIMIZERS
from common.errors import InputError, first_line
from common.memory import check_memory
from scratch.mlp import iterate_minibatches
from scratch.toolbox.model import Arch, Network, forward, init_buffers, init_params
from scratch.train import make_optimizer, train_epoch

# ----------------------------------------------------------------------------- the estimator


class MLPClassifier(base.ClassifierMixin, base.BaseEstimator):
    """Multilayer perceptron classifier: hidden ReLU layers (by default), softmax cross-entropy.

    Parameters are the training programs' flags: hidden_layer_sizes (--hidden), activation,
    batchnorm, dropout, optimizer ("sgd", "adam", "adamw"), lr, weight_decay, batch_size,
    epochs, dtype ("float32" or "float64"), random_state (None, an int, or a NumPy generator:
    the seed of the weights, the shuffling and the dropout masks) and verbose (print each
    epoch's loss). Fitted attributes: classes_, n_features_in_, loss_curve_, n_iter_,
    params_ and buffers_ (the arrays of scratch/toolbox/model.py).
    """

    def __init__(self, hidden_layer_sizes=(128, 64), activation="relu", batchnorm=False, dropout=0.0,
                 optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=64, epochs=10,
                 dtype="float32", random_state=None, verbose=False):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X, y):
        """Train a fresh network on (X, y) for `epochs` epochs; return self."""
        hidden, dtype = _check_params(self)
        X, y = _validate(self, X, y, reset=True)
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"MLPClassifier needs samples of at least 2 classes in y, got 1 class "
                             f"({self.classes_[0]!r})")
        sizes = [X.shape[1], *hidden, len(self.classes_)]
        check_memory(sizes, dtype, bool(self.batchnorm), remedy="use smaller hidden_layer_sizes")
        rng = np.random.default_rng(base.seed_from(self.random_state, _fresh_seed))
        self.arch_ = Arch(self.activation, bool(self.batchnorm), float(self.dropout))
        self.params_ = init_params(sizes, rng, X.dtype, batchnorm=bool(self.batchnorm))
        self.buffers_ = init_buffers(self.params_)
        optimizer = make_optimizer(self.optimizer, self.params_, self.lr, weight_decay=self.weight_decay)
        model, labels = Network(self.params_, self.arch_, self.buffers_, rng), labels.astype(np.int64)
        self.loss_curve_ = []
        for epoch in range(1, self.epochs + 1):
            loss = train_epoch(model, optimizer, iterate_minibatches(X, labels, self.batch_size, rng), "ce", epoch)
            self.loss_curve_.append(loss)
            if self.verbose:
                print(f"epoch {epoch}/{self.epochs}  train loss {loss:.4f}", flush=True)
        self.n_iter_ = self.epochs
        return self

    def decision_logits(self, X):
        """The network's raw outputs (N, n_classes) in evaluation mode, as float64."""
        try:
            base.check_is_fitted(self)
        except base.NotFittedError as err:
            raise _NotFitted(str(err)) from None
        X = _validate(self, X, reset=False)
        out = [forward(self.params_, X[i:i + EVAL_BATCH], self.arch_, self.buffers_, train=False)[0]
               for i in range(0, len(X), EVAL_BATCH)]
        return np.concatenate(out).astype(np.float64)  # N, C

    def predict_proba(self, X):
        """softmax of the logits, computed after subtracting each row's maximum."""
        logits = self.decision_logits(X)
        exp = np.exp(logits - logits.max(axis=1, keepdims=True))  # N, C   (max shift: exp <= 1)
        return exp / exp.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class with the largest logit (the largest probability) for each row."""
        best = self.decision_logits(X).argmax(axis=1)  # checks fitted first
        return self.classes_[best]


# ----------------------------------------------------------------------------- checking parameters


class _InputTypeError(InputError, TypeError):
    """Bad input that scikit-learn's conventions raise as a TypeError (sparse X, X holding dicts)."""


class _NotFitted(InputError, base.NotFittedError):
    """predict before fit: scikit-learn's NotFittedError, and an InputError like every refusal."""


def _whole(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def _check_params(estimator):
    """Refuse, in one line naming the parameter and what it takes, what fit cannot train (fit
    checks them, not __init__, as scikit-learn does); returns the hidden widths and the dtype."""
    def refuse(name, allowed):
        raise InputError(f"MLPClassifier's {name} must be {allowed}, got {getattr(estimator, name)!r}")

    sizes = estimator.hidden_layer_sizes
    sizes = [sizes] if _whole(sizes) else sizes
    if isinstance(sizes, (str, bytes)) or not np.iterable(sizes) or not all(_whole(s) and s > 0 for s in sizes):
        refuse("hidden_layer_sizes", "a positive whole number or a sequence of them (empty: no hidden layer)")
    if estimator.activation not in ACTIVATIONS:
        refuse("activation", f"one of {', '.join(ACTIVATIONS)}")
    if not _real(estimator.dropout) or not 0 <= estimator.dropout < 1:
        refuse("dropout", "a number at least 0 and below 1")
    if estimator.optimizer not in OPTIMIZERS:
        refuse("optimizer", f"one of {', '.join(OPTIMIZERS)}")
    if not _real(estimator.lr) or not 0 < estimator.lr <= MOST_FLOAT:
        refuse("lr", f"a positive finite number up to {MOST_FLOAT:.5g}")
    if not _real(estimator.weight_decay) or not 0 <= estimator.weight_decay <= MOST_FLOAT:
        refuse("weight_decay", f"a finite number from 0 to {MOST_FLOAT:.5g}")
    for name in ("batch_size", "epochs"):
        if not _whole(getattr(estimator, name)) or not 0 < getattr(estimator, name) <= MOST_INT:
            refuse(name, f"a whole number from 1 to {MOST_INT}")
    try:
        dtype = np.dtype(estimator.dtype).name
    except TypeError:
        dtype = None
    if dtype not in ("float32", "float64"):
        refuse("dtype", "'float32' or 'float64'")
    seed = estimator.random_state
    if not (seed is None or (_whole(seed) and 0 <= seed <= MOST_SEED) or hasattr(seed, "randint")
            or hasattr(seed, "integers")):
        refuse("random_state", f"None, a whole number from 0 to {MOST_SEED} or a NumPy random generator")
    return [int(s) for s in sizes], dtype


# ----------------------------------------------------------------------------- checking inputs


def _fresh_seed():
    return int(np.random.SeedSequence().generate_state(1)[0])


def _validate(estimator, X, y=None, reset=True):
    """X as a 2-d float array in the estimator's dtype (and y as 1-d labels when fitting),
    through scikit-learn's validate_data where installed (its messages, n_features_in_,
    feature_names_in_), through the checks below where not. Every refusal is an InputError of
    one line (scikit-learn's first line: the rest is a dump of the array)."""
    try:
        return _arrays(estimator, X, y, reset)
    except InputError:
        raise
    except TypeError as err:
        raise _InputTypeError(first_line(err)) from None
    except ValueError as err:
        raise InputError(first_line(err)) from None


def _arrays(estimator, X, y, reset):
    dtype = np.dtype(estimator.dtype)
    options = dict(accept_sparse=False, dtype=[np.float64, np.float32], ensure_2d=True)
    fitting = reset
    if not hasattr(X, "toarray"):  # the common slips, in the same words with or without scikit-learn
        _numbers(np.asarray(X))
    if base.HAVE_SKLEARN:
        validate = (lambda *a, **k: base.validate_data(estimator, *a, **k)) if base.validate_data \
            else estimator._validate_data
        if fitting:
            X, y = validate(X, y, reset=True, **options)
            base.check_classification_targets(y)
        else:
            X = validate(X, reset=False, **options)
        return (X.astype(dtype, copy=False), y) if fitting else X.astype(dtype, copy=False)
    X = _plain_X(estimator, X, reset)
    if not fitting:
        return X.astype(dtype, copy=False)
    return X.astype(dtype, copy=False), _plain_y(y, len(X))


def _numbers(X):
    """Refuse an X that is not a 2-d array of finite numbers (strings: the value that fails)."""
    if X.ndim != 2:
        raise InputError(f"X must be a 2-d array (samples, features), got shape {X.shape}: "
                         f"Reshape your data: X.reshape(-1, 1) for a single feature, X.reshape(1, -1) for a single sample")
    if X.dtype.kind == "c":
        raise InputError(f"Complex data not supported: X must hold real numbers, got {X.dtype}; pass X.real, "
                         f"or the real and imaginary parts as separate features")
    if X.dtype.kind in "USO":
        try:
            X = X.astype(np.float64)
        except ValueError as err:
            raise InputError(f"X must hold real numbers: {err}") from None
        except TypeError as err:
            raise _InputTypeError(f"X must hold real numbers: {err}") from None
    if X.dtype.kind in "biuf" and not np.isfinite(X).all():
        raise InputError("Input X contains NaN or infinity: MLPClassifier needs finite numbers "
                         "(impute or drop the missing values)")


def _plain_X(estimator, X, reset):
    if hasattr(X, "toarray"):
        raise TypeError("sparse input is not supported: pass a dense array (X.toarray())")
    X = np.asarray(X)  # _arrays has checked its numbers
    if X.dtype.kind not in "biufUSO":
        raise ValueError(f"X must hold real numbers, got dtype {X.dtype}")
    X = X.astype(np.float64) if X.dtype.kind in "USO" else X
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty: shape {X.shape}")
    if reset:
        estimator.n_features_in_ = X.shape[1]
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
                         f"{estimator.n_features_in_} features as input")
    return X


def _plain_y(y, n):
    if y is None:
        raise ValueError("MLPClassifier requires y to be passed, but the target y is None")
    y = np.asarray(y)
    y = y.ravel() if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1:
        raise ValueError(f"y must be 1-d with one label per sample ({n}), got shape {y.shape}")
    if len(y) != n:  # scikit-learn's words
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {len(y)}]")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or (y != np.round(y)).any()):
        raise ValueError("Unknown label type: continuous; MLPClassifier needs class labels")
    return y
