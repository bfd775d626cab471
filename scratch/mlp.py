"""The default MLP by hand in NumPy: the whole training step of 784-128-64-10 on one screen.

Twin: torchimpl/mlp.py, the same program with nn.Linear, F.cross_entropy, autograd,
torch.optim.SGD and a DataLoader: read the two side by side. The toolbox builds on this file.
Run it: python -m scratch.mlp [--epochs 20 --hidden 128 64 --lr 0.5 --batch-size 64 --seed 0]
Notation: N batch, D in (784 pixels), H_i width of layer i, C classes (10 digits).
"""

import time

import numpy as np

from common import cli
from common.errors import run_cli
from scratch.data import load_mnist

# ----------------------------------------------------------------------------- the network

def init_model(layer_sizes, rng, dtype=np.float32):
    """{"W1", "b1", ...}, each ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)): nn.Linear's draw, whose
    kaiming_uniform_(a=sqrt(5)) works out to that bound. W_i is (out, in) like nn.Linear's weight."""
    model = {}
    for i, (fan_in, fan_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]), start=1):
        bound = 1 / np.sqrt(fan_in)
        model[f"W{i}"] = rng.uniform(-bound, bound, size=(fan_out, fan_in)).astype(dtype)  # H_i, H_{i-1}
        model[f"b{i}"] = rng.uniform(-bound, bound, size=fan_out).astype(dtype)  # H_i
    return model

def linear_forward(x, W, b):
    """y = x W^T + b, as nn.Linear computes it."""
    return x @ W.T + b, (x, W)  # N, H

def linear_backward(dout, cache, need_dx=True):
    """From dL/dy (N, H) to dL/dx, dL/dW, dL/db; dx is None unless needed, as torch leaves an
    input's .grad None unless it requires grad (the first layer's input is the data)."""
    x, W = cache
    dx = dout @ W if need_dx else None  # N, D   (dy/dx = W)
    dW = dout.T @ x  # H, D   (a sum over the batch of outer products dout_n x_n^T)
    db = dout.sum(axis=0)  # H      (b is added to every row)
    return dx, dW, db

def relu_forward(x):
    return np.maximum(x, 0), x  # N, H

def relu_backward(dout, cache):
    """The gradient passes where the input was positive; at exactly 0 it is 0, as in torch."""
    return dout * (cache > 0)  # N, H   (cache is the input; a new array: dout is never written)

def forward(model, X):
    """Linear, ReLU, Linear, ReLU, ..., Linear: the logits and each layer's caches."""
    n_layers = len(model) // 2
    h, caches = X, []  # N, D
    for i in range(1, n_layers + 1):
        h, linear_cache = linear_forward(h, model[f"W{i}"], model[f"b{i}"])  # N, H_i
        # no ReLU after the last layer: it gives the logits
        h, relu_cache = relu_forward(h) if i < n_layers else (h, None)  # N, H_i
        caches.append((linear_cache, relu_cache))
    return h, caches  # N, C


# ----------------------------------------------------------------------------- the loss

def softmax_cross_entropy(logits, y):
    """Mean over the batch of -log softmax(z)[y] (nn.CrossEntropyLoss), and its gradient dL/dz."""
    N = len(y)
    shifted = logits - logits.max(axis=1, keepdims=True)  # N, C   (max shift: exp never overflows)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # N, C
    loss = -log_probs[np.arange(N), y].mean()
    dlogits = np.exp(log_probs)  # N, C   softmax(z)
    dlogits[np.arange(N), y] -= 1  # N, C   d/dz of mean CE = (softmax(z) - onehot(y)) / N
    return loss, dlogits / N


# ----------------------------------------------------------------------------- the backward pass

def backward(dlogits, caches, input_grad=False):
    """dL/d every parameter (same keys as the model), the last layer first; dL/dX only if input_grad."""
    grads, dh = {}, dlogits  # N, C
    for i in range(len(caches), 0, -1):
        linear_cache, relu_cache = caches[i - 1]
        if relu_cache is not None:
            dh = relu_backward(dh, relu_cache)  # N, H_i
        need_dx = i > 1 or input_grad  # training never reads dL/dX: one whole product saved
        dh, grads[f"W{i}"], grads[f"b{i}"] = linear_backward(dh, linear_cache, need_dx)  # N, H_{i-1}
    return grads, dh  # dh: N, D, or None   (parity asks for it with input_grad=True)


# ----------------------------------------------------------------------------- the optimizer

class SGD:
    """torch.optim.SGD without momentum: p -= lr * grad, in place, for every parameter."""

    def __init__(self, params, lr):
        self.params, self.lr = params, lr

    def step(self, grads):
        for name, p in self.params.items():
            p -= self.lr * grads[name]


# ----------------------------------------------------------------------------- minibatches, one epoch, evaluation

def iterate_minibatches(X, y, batch_size, rng=None):
    """Every example once in batches, shuffled by rng if given; the last keeps the remainder."""
    order = rng.permutation(len(X)) if rng is not None else np.arange(len(X))
    for start in range(0, len(X), batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]  # B, D and B

def train_epoch(model, optimizer, batches):
    """One pass of forward, loss, backward and SGD step per batch; the mean loss per example."""
    total, n = 0.0, 0
    for xb, yb in batches:
        logits, caches = forward(model, xb)  # B, C
        loss, dlogits = softmax_cross_entropy(logits, yb)  # dlogits: B, C
        grads, _ = backward(dlogits, caches)  # dL/dX is not computed
        optimizer.step(grads)
        total, n = total + float(loss) * len(yb), n + len(yb)
    return total / n

def evaluate(model, batches):
    """The fraction of examples whose largest logit is the label's."""
    correct, n = 0, 0
    for xb, yb in batches:
        logits, _ = forward(model, xb)  # B, C
        correct, n = correct + int((logits.argmax(axis=1) == yb).sum()), n + len(yb)
    return correct / n


# ----------------------------------------------------------------------------- the program

def main(argv=None):
    args = cli.parse_args(cli.core_parser("python -m scratch.mlp", __doc__.splitlines()[0]), argv)
    (X, y), test = cli.limited(load_mnist(args.data_dir, "train"), args.limit), load_mnist(args.data_dir, "test")
    rng = np.random.default_rng(args.seed)  # draws the weights, then every epoch's shuffle
    model = init_model(cli.layer_sizes(args), rng)
    optimizer = SGD(model, lr=args.lr)
    print(cli.describe_run("scratch.mlp", args, len(X), len(test[0])), flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, optimizer, iterate_minibatches(X, y, args.batch_size, rng))
        seconds = time.perf_counter() - start
        train_acc = evaluate(model, iterate_minibatches(X, y, cli.EVAL_BATCH))
        test_acc = evaluate(model, iterate_minibatches(*test, cli.EVAL_BATCH))
        cli.report_epoch(cli.epoch_record(epoch, loss, train_acc, test_acc, seconds), args.epochs, False)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m scratch.mlp"))
