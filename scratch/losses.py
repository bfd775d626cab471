"""Losses by hand, each returning (loss, dloss/dinput) in one call.

Twin: nn.CrossEntropyLoss in torchimpl/train.py. Notation: N batch, C classes.
"""

import numpy as np

from common.errors import InputError

# ----------------------------------------------------------------------------- cross-entropy


def softmax_cross_entropy(logits, y):
    """Mean over the batch of -log softmax(z)[y], like nn.CrossEntropyLoss; and its gradient.

    loss_n = logsumexp(z_n) - z_n[y_n], computed after subtracting max(z_n) so that exp never
    overflows: logits of +-1e4 give a finite loss and gradient.
    """
    N, C = logits.shape
    if y.shape != (N,):
        raise InputError(f"labels must have shape ({N},) to match the logits, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels must be integer class indices, got {y.dtype}")
    if N and (y.min() < 0 or y.max() >= C):
        raise InputError(f"labels must lie in [0, {C}), found {int(y.min() if y.min() < 0 else y.max())}")
    shifted = logits - logits.max(axis=1, keepdims=True)  # N, C   (max shift: exp <= 1)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # N, C
    rows = np.arange(N)
    loss = -log_probs[rows, y].mean()
    # d/dz of mean CE = (softmax(z) - onehot(y)) / N
    dlogits = np.exp(log_probs)  # N, C
    dlogits[rows, y] -= 1
    dlogits /= N
    return loss, dlogits
