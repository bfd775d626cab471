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
    """lr_t = eta_min + (base_lr - eta_min)(1 + cos(pi t / T_max)) / 2, the formula torch documents,
    evaluated in closed form from base_lr (the optimizer's lr at construction) and t = last_epoch.

    The lr falls from base_lr at t = 0 to eta_min at t = T_max, then climbs back up along the
    cosine to base_lr at 2 T_max, and so on with period 2 T_max (no restarts, no clamp), as
    torch's does. torch's get_lr reaches the same values by a recursion that rescales the
    optimizer's current lr, (1 + cos(pi t / T)) / (1 + cos(pi (t - 1) / T)) * (lr - eta_min)
    + eta_min, so the two differ in two ways. The recursion's rounding accumulates from epoch
    to epoch and grows where lr - eta_min is small (measured against the closed form, for
    T_max <= 20: within 5e-15 of base_lr over the first 2 T_max epochs, 5e-14 by 10 T_max; up
    to 4e-12 of base_lr for T_max = 1000). And an lr changed by hand between steps carries on
    in torch's recursion, while here the next step overwrites it.
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
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        lr = eta_min + (self.base_lr - eta_min) * (1 + math.cos(math.pi * t / T)) / 2
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def get_last_lr(self):
        """The lr set by the latest step (or the initial one), as a list like torch's."""
        return list(self._last_lr)
