"""Learning-rate schedules by hand, stepped once per epoch like torch.optim.lr_scheduler.

Twin: torch.optim.lr_scheduler.CosineAnnealingLR (torchimpl/train.py). A schedule wraps an
optimizer from scratch/toolbox/optim.py and sets its .lr; the idiom is torch's:

    schedule = CosineAnnealingLR(optimizer, T_max=epochs)
    for epoch in range(epochs):
        train_one_epoch(...)        # optimizer.step(grads) on every batch
        schedule.step()             # once per epoch, after the optimizer's steps
"""

import math

from common.errors import InputError

# ----------------------------------------------------------------------------- cosine annealing


class CosineAnnealingLR:
    """lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t / T_max)) / 2, computed as torch does.

    torch's get_lr does not evaluate that closed form: it updates the optimizer's current lr
    recursively, which rounds differently, so this class repeats the recursion to agree with
    get_last_lr() to the last bits:
        lr_t = (1 + cos(pi t / T)) / (1 + cos(pi (t - 1) / T)) * (lr_{t-1} - eta_min) + eta_min
    except where the denominator is 0 (t - 1 = T, 3T, ...: the bottom of a cosine period), where
        lr_t = lr_{t-1} + (lr_0 - eta_min)(1 - cos(pi / T)) / 2.
    Past T_max the lr climbs back up along the cosine, as torch's does (no restarts, no clamp).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise InputError(f"T_max must be a whole number of epochs >= 1, got {T_max!r}")
        self.optimizer, self.T_max, self.eta_min = optimizer, T_max, eta_min
        self.base_lr = optimizer.lr  # torch's base_lrs[0] (initial_lr)
        self.last_epoch = 0  # torch's counter after its constructor's initial step
        self._last_lr = [optimizer.lr]

    def step(self):
        """Advance one epoch and set the optimizer's lr for the next one."""
        self.last_epoch += 1
        t, T, eta_min, lr = self.last_epoch, self.T_max, self.eta_min, self.optimizer.lr
        if (t - 1 - T) % (2 * T) == 0:
            lr = lr + (self.base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
        else:
            lr = ((1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                  * (lr - eta_min) + eta_min)
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def get_last_lr(self):
        """The lr set by the latest step (or the initial one), as a list like torch's."""
        return list(self._last_lr)
