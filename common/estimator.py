"""What both twins' MLPClassifier share: scikit-learn's base classes, or stand-ins without it.

scikit-learn is optional (the `sklearn` extra). Where it imports, the estimators subclass its
BaseEstimator and ClassifierMixin, and so work in Pipeline, GridSearchCV, clone and
check_estimator; where it does not, the small classes below give the same get_params,
set_params, score and NotFittedError, so that `fit`, `predict` and `score` still work.
Pure Python: the twins validate arrays themselves.
"""

import inspect

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted
    try:
        from sklearn.utils.validation import validate_data  # scikit-learn >= 1.6
    except ImportError:
        validate_data = None  # older releases: the estimator's own _validate_data
    HAVE_SKLEARN = True
except ImportError:
    HAVE_SKLEARN = False
    validate_data = check_classification_targets = None

    class NotFittedError(ValueError, AttributeError):
        """Raised by predict before fit (scikit-learn's exception of the same name)."""

    class BaseEstimator:
        """get_params / set_params read off __init__'s keyword arguments, as scikit-learn's do."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}: "
                                     f"valid parameters are {valid}")
                setattr(self, name, value)
            return self

        def __repr__(self):
            defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
            changed = [f"{k}={v!r}" for k, v in self.get_params().items() if defaults.get(k) != v]
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClassifierMixin:
        _estimator_type = "classifier"

        def score(self, X, y):
            """Mean accuracy of predict(X) against y."""
            predicted = list(self.predict(X))
            truth = list(y)
            if len(predicted) != len(truth):
                raise ValueError(f"X has {len(predicted)} samples but y has {len(truth)}")
            return sum(bool(p == t) for p, t in zip(predicted, truth)) / len(truth)

    def check_is_fitted(estimator):
        if not hasattr(estimator, "classes_"):
            raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet: call fit first")


def seed_from(random_state, draw_seed):
    """An int seed from scikit-learn's random_state conventions: None (a fresh one, from
    draw_seed()), an int, or a NumPy RandomState / Generator (one draw from it)."""
    if random_state is None:
        return draw_seed()
    if isinstance(random_state, bool):
        raise ValueError(f"random_state must be None, an int or a NumPy random generator, got {random_state!r}")
    if hasattr(random_state, "__index__"):
        return int(random_state) % 2**32
    for method in ("randint", "integers"):  # RandomState, Generator
        if hasattr(random_state, method):
            return int(getattr(random_state, method)(0, 2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a NumPy random generator, got {random_state!r}")
