"""Optimizers by hand: torch.optim's SGD, Adam and AdamW, written as the textbook formulas.

Twin: torch.optim.SGD, Adam and AdamW (used in torchimpl/train.py). An optimizer holds the
parameter dict and updates its arrays in place on step(grads), as torch's optimizers update
param.data. Its buffers live in .state (name -> buffer, as torch's optimizer.state[param]) and
its learning rate in .lr, which a schedule (scratch/toolbox/schedules.py) may change between steps.
The update rules are the ones torch documents for each optimizer; torch's kernels evaluate them
in another order (lerp, addcmul, addcdiv), so the two sides round differently in the last bits
and agree to float64 rounding, not bit for bit.
"""

import numpy as np

from common.errors import InputError
from scratch import mlp

# ----------------------------------------------------------------------------- SGD


class SGD(mlp.SGD):
    """torch.optim.SGD: g = grad + weight_decay * p; with momentum, buf = g on the first step,
    then buf = momentum * buf + (1 - dampening) * g; nesterov steps along g + momentum * buf,
    otherwise along buf; finally the core's plain step p -= lr * step. The learning rate stays
    outside the buffer.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        if not lr > 0:
            raise InputError(f"learning rate must be positive, got {lr}")
        if momentum < 0 or weight_decay < 0:
            raise InputError(f"momentum and weight decay must be >= 0, got {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise InputError("nesterov momentum needs momentum > 0 and dampening 0")
        super().__init__(params, lr)
        self.momentum, self.dampening = momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.state = {}  # name -> momentum buffer

    def step(self, grads):
        steps = {}  # name -> the direction the core's SGD steps along
        for name, p in self.params.items():
            g = grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * p  # L2 penalty wd/2 |p|^2 folded into the gradient
            if self.momentum:
                buf = self.state.get(name)
                if buf is None:
                    buf = self.state[name] = np.array(g, copy=True)  # no dampening on step 1
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            steps[name] = g
        super().step(steps)  # p -= lr * step


# ----------------------------------------------------------------------------- Adam


class Adam:
    """torch.optim.Adam: with t the step count (incremented first), g = grad + weight_decay * p,
        m = b1 m + (1 - b1) g,          v = b2 v + (1 - b2) g^2,
        m_hat = m / (1 - b1^t),         v_hat = v / (1 - b2^t),
        p -= lr * m_hat / (sqrt(v_hat) + eps).
    eps is added to sqrt(v_hat), not inside the square root. state[name] holds "step" (int),
    "exp_avg" (m) and "exp_avg_sq" (v), torch's names; lr may be changed between steps.
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        beta1, beta2 = betas
        if not lr >= 0 or not eps >= 0 or not weight_decay >= 0:
            raise InputError(f"learning rate, eps and weight decay must be >= 0, "
                             f"got {lr}, {eps}, {weight_decay}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise InputError(f"Adam's betas must each lie in [0, 1), got {betas}")
        self.params, self.lr = params, lr
        self.betas, self.eps, self.weight_decay = (beta1, beta2), eps, weight_decay
        self.state = {}  # name -> {"step": t, "exp_avg": m, "exp_avg_sq": v}

    def step(self, grads):
        b1, b2 = self.betas
        for name, p in self.params.items():
            g = grads[name]
            state = self.state.get(name)
            if state is None:
                state = self.state[name] = {"step": 0, "exp_avg": np.zeros_like(p),
                                            "exp_avg_sq": np.zeros_like(p)}
            state["step"] += 1
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]  # m, v: shape of p
            if self.weight_decay:
                if self.decoupled_weight_decay:
                    p *= 1 - self.lr * self.weight_decay  # AdamW: shrink p, g stays the loss's
                else:
                    g = g + self.weight_decay * p  # Adam: L2 penalty folded into g
            m[...] = b1 * m + (1 - b1) * g  # running mean of g
            v[...] = b2 * v + (1 - b2) * g * g  # running mean of g^2
            # m and v start at 0, so early averages are too small by a factor 1 - b^t
            m_hat = m / (1 - b1 ** t)
            v_hat = v / (1 - b2 ** t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, p *= 1 - lr * weight_decay before the
    moment updates, and weight_decay 1e-2 by default. The decay never enters m or v.
    """

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
