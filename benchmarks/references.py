"""The NumPy loops the core's epoch is measured against: a minimal loop and the configurable network.

Part of `python -m benchmarks`; same methods as the backends in benchmarks/backends.py.

- numpy-minimal: the core's arithmetic (scratch/mlp.py: the same products, the same bias adds,
  ReLU, masks, softmax cross-entropy and SGD update, on the same shuffled batches) written as one
  plain loop with no function per layer. It is the reference for the core's per-call cost: what
  the core spends beyond it is the price of its readable functions.
- numpy-toolbox: the configurable network (scratch/toolbox/model.py forward and backward, the
  toolbox's SGD) with its default options, the step scratch/train.py takes by default.
"""

import numpy as np

from benchmarks.backends import NumpyBackend
from scratch.toolbox.losses import cross_entropy
from scratch.toolbox.model import Arch, backward, forward
from scratch.toolbox.optim import SGD

# N examples, D features, B batch

# ----------------------------------------------------------------------------- the minimal loop


def minimal_step(Ws, bs, xb, yb, lr):
    """One SGD step of Linear-ReLU-...-Linear with softmax cross-entropy, in place; the mean loss."""
    hs = [xb]  # each layer's input: B, D, then B, H_i
    for i, (W, b) in enumerate(zip(Ws, bs)):
        z = hs[-1] @ W.T + b  # B, H_i
        hs.append(np.maximum(z, 0) if i < len(Ws) - 1 else z)
    logits, rows = hs.pop(), np.arange(len(yb))  # B, C
    shifted = logits - logits.max(axis=1, keepdims=True)  # B, C
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # B, C
    dz = np.exp(log_probs)  # B, C   softmax
    dz[rows, yb] -= 1
    dz /= len(yb)  # dL/dlogits
    for i in range(len(Ws) - 1, -1, -1):
        h, W = hs[i], Ws[i]
        dW, db = dz.T @ h, dz.sum(axis=0)  # H_i, H_{i-1} and H_i
        if i > 0:  # no gradient for the images
            dz = (dz @ W) * (h > 0)  # B, H_{i-1}   through the ReLU: h > 0 where z > 0
        W -= lr * dW
        bs[i] -= lr * db
    return -log_probs[rows, yb].mean()


class NumpyMinimalBackend(NumpyBackend):
    """minimal_step over the same shuffled batches as the core (the same generator and seed)."""

    name = "numpy-minimal"

    def _train(self, xb, yb):
        n = len(self.params) // 2
        Ws = [self.params[f"W{i}"] for i in range(1, n + 1)]  # the arrays themselves: updated in place
        bs = [self.params[f"b{i}"] for i in range(1, n + 1)]
        return minimal_step(Ws, bs, xb, yb, self.lr)


# ----------------------------------------------------------------------------- the configurable network


class NumpyToolboxBackend(NumpyBackend):
    """scratch/train.py's step with its defaults: the toolbox's forward (input checks), its
    cross-entropy (label checks), its backward and its SGD (no momentum, no weight decay)."""

    name = "numpy-toolbox"

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        super().__init__(X, y, params, batch_size, lr, seed, device)
        self.optimizer, self.arch = SGD(self.params, lr=lr), Arch()

    def _train(self, xb, yb):
        out, caches = forward(self.params, xb, self.arch, {}, train=True)  # B, C
        loss, dout = cross_entropy(out, yb)
        grads, _ = backward(dout, caches)
        self.optimizer.step(grads)
        return loss
