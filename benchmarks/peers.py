"""The peer a user would pick instead of either twin: scikit-learn's MLPClassifier, as a backend.

Part of `python -m benchmarks`; same methods as the backends in benchmarks/backends.py. Its
twin, in the sense of doing the same arithmetic, is benchmarks.backends.NumpyBackend: both are
hand-written NumPy MLPs, and scikit-learn's is the one that ships in a library.

The estimator is set up as the NumPy twin trains: the same network (784-H-10, ReLU, softmax
output), plain SGD (solver="sgd", momentum 0, no Nesterov, alpha 0 so no L2 term,
learning_rate="constant"), the same batch size, float32 data, a shuffle per epoch. One epoch is
one partial_fit over the whole training set, the way scikit-learn trains one epoch at a time.

- Same step, checked: scikit-learn's loss is the mean log-loss (plus the alpha term, here 0) and
  its update is coef -= lr * (mean gradient), with momentum 0 the velocity drops out; its weights
  are stored transposed (coefs_[i] is W.T). So from the shared weights it takes the same steps as
  the NumPy twin and passes the runner's step check at the same tolerances. Two differences stay
  within rounding: its log-loss clips probabilities to [eps, 1 - eps] (float32 eps 1.2e-7, which
  moves a loss only where a probability is that close to 0 or 1), and it sums in its own order.
- Setup outside the timed region: the first partial_fit (which draws scikit-learn's own Glorot
  weights and builds its optimizer) runs in __init__ on one batch; the shared weights are then
  copied into coefs_ and intercepts_ in place, the arrays its optimizer updates.
- A fresh order every epoch: partial_fit re-reads random_state on every call, so an integer seed
  would shuffle every epoch alike; a np.random.RandomState instance carries on from call to call.
- Input validation: partial_fit checks its input on every call, where fit checks it once for all
  epochs. The epoch runs under sklearn.config_context(assume_finite=True), which skips the
  finiteness scan of the whole training set; the dtype and shape checks and the one-hot labels
  remain (no copy: the data is already float32 and C-contiguous): measured on full MNIST at one
  thread, 0.03 s an epoch (0.12 s with the scan), a few percent of the epoch.

scikit-learn is imported only when the backend is built; where it is missing, sklearn_note()
says why and the row is not measured.
"""

import importlib.util

import numpy as np

from scratch.toolbox.model import layer_sizes_of

# ----------------------------------------------------------------------------- availability


def sklearn_note():
    """None where scikit-learn can be imported; otherwise why the sklearn row cannot be measured."""
    if importlib.util.find_spec("sklearn") is None:
        return "scikit-learn is not installed: pip install -e '.[sklearn]' (or pip install scikit-learn)"
    return None


# ----------------------------------------------------------------------------- the backend


class SklearnBackend:
    """scikit-learn's MLPClassifier, one partial_fit per epoch, from the shared weights."""

    name, device = "sklearn", "cpu"

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        import sklearn  # lazily: the other backends run without scikit-learn
        from sklearn.neural_network import MLPClassifier

        self.sklearn = sklearn
        self.X, self.y, self.batch_size = X, y, batch_size  # N, D and N
        sizes = layer_sizes_of(params)
        self.model = MLPClassifier(
            hidden_layer_sizes=tuple(sizes[1:-1]), activation="relu", solver="sgd", alpha=0.0,
            batch_size=batch_size, learning_rate="constant", learning_rate_init=lr, momentum=0.0,
            nesterovs_momentum=False, shuffle=True, random_state=np.random.RandomState(seed))
        first = np.arange(min(batch_size, len(X)))  # one batch: builds coefs_ and the optimizer
        self.model.partial_fit(X[first], y[first], classes=np.arange(sizes[-1]))
        self.set_params(params)
        self.record_fields = {"scikit_learn": sklearn.__version__,
                              "epoch_call": "MLPClassifier.partial_fit over the training set"}

    def epoch(self):
        with self.sklearn.config_context(assume_finite=True):
            self.model.partial_fit(self.X, self.y)

    def sync(self):
        pass

    def epoch_loss(self):
        return float(self.model.loss_)  # partial_fit's mean loss over the epoch's examples

    def step(self, idx):
        """One partial_fit on exactly the examples idx, in their order (one batch, no shuffle)."""
        self.model.shuffle = False
        try:
            self.model.partial_fit(self.X[idx], self.y[idx])
        finally:
            self.model.shuffle = True
        return float(self.model.loss_)

    def get_params(self):
        params = {}
        for i, (W_t, b) in enumerate(zip(self.model.coefs_, self.model.intercepts_), start=1):
            params[f"W{i}"], params[f"b{i}"] = W_t.T.copy(), b.copy()  # coefs_ is W.T: (in, out)
        return params

    def set_params(self, params):
        for i, (W_t, b) in enumerate(zip(self.model.coefs_, self.model.intercepts_), start=1):
            W_t[...] = params[f"W{i}"].T  # in place: the optimizer holds these arrays
            b[...] = params[f"b{i}"]
