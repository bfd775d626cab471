"""Optimizers by hand, with torch.optim's exact update rules.

Twin: torch.optim (used in torchimpl/train.py). An optimizer holds the parameter dict and
updates its arrays in place on step(grads), as torch's optimizers update param.data.
"""

import numpy as np

from common.errors import InputError

# ----------------------------------------------------------------------------- SGD


class SGD:
    """torch.optim.SGD: g = grad + weight_decay * p; with momentum, buf = g on the first step,
    then buf = momentum * buf + (1 - dampening) * g; nesterov steps along g + momentum * buf,
    otherwise along buf; finally p -= lr * step. The learning rate stays outside the buffer.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if not lr > 0:
            raise InputError(f"learning rate must be positive, got {lr}")
        if momentum < 0 or weight_decay < 0:
            raise InputError(f"momentum and weight decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise InputError("nesterov momentum needs momentum > 0 and dampening 0")
        self.params, self.lr = params, lr
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.state = {}  # name -> momentum buffer

    def step(self, grads):
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buf = self.state.get(name)
                if buf is None:
                    buf = self.state[name] = np.array(g, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g
