"""The toolbox rows of the study page: each hand-written piece, the torch code it twins, torch's
documented formula, and the piece's own figure from a short float64 parity run.

PIECES is the table of pieces; measure_toolbox runs parity (parity.run.run) once per piece, in
the run that builds the page, and summarises each run as Figures (parity/study_figures.py).
"""

import dataclasses
import math
from dataclasses import dataclass, field

import torch

from parity.compare import NOISE_DRIVEN
from parity.run import Config, run
from parity.study_figures import Figure


# ----------------------------------------------------------------------------- the pieces


@dataclass
class Piece:
    name: str
    scratch: list  # [(repo-relative path, [function or class names])]
    torch_code: str  # the module or call it twins
    formula: str  # its formula from torch's documentation, in one line
    flags: dict  # the parity Config fields that switch it on
    figures: list = field(default_factory=list)  # [Figure]
    also: tuple = ()  # flags of further runs in the same row (batch norm under Adam too)

    @property
    def ok(self):
        return bool(self.figures) and all(f.record.ok and f.run_ok is not False for f in self.figures)


LAYERS, LOSSES = "scratch/toolbox/layers.py", "scratch/toolbox/losses.py"
OPTIM, SCHEDULES = "scratch/toolbox/optim.py", "scratch/toolbox/schedules.py"
# Flags as docs/parity.md's toolbox table: lr at which training is stable (lr 0.5 with momentum
# 0.9 amplifies rounding step by step); Config fills the programs' default lr otherwise.
PIECES = [
    Piece("batch norm", [(LAYERS, ["batchnorm_forward", "batchnorm_backward"])],
          "nn.BatchNorm1d(H)  # model.train() / model.eval()",
          "y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta", {"batchnorm": True},
          also=({"batchnorm": True, "optimizer": "adam"},)),
    Piece("dropout", [(LAYERS, ["dropout_mask", "dropout_forward", "dropout_backward"])],
          "nn.Dropout(p)  # the same mask handed to both twins",
          "y = x * m / (1 - p), m ~ Bernoulli(1 - p), in training; y = x in eval", {"dropout": 0.2}),
    Piece("leaky ReLU", [(LAYERS, ["leaky_relu_forward", "leaky_relu_backward"])], "nn.LeakyReLU()",
          "LeakyReLU(x) = max(0, x) + negative_slope * min(0, x), negative_slope = 0.01",
          {"activation": "leaky_relu"}),
    Piece("sigmoid", [(LAYERS, ["sigmoid_forward", "sigmoid_backward"])], "nn.Sigmoid()",
          "Sigmoid(x) = 1 / (1 + exp(-x))", {"activation": "sigmoid"}),
    Piece("tanh", [(LAYERS, ["tanh_forward", "tanh_backward"])], "nn.Tanh()",
          "Tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))", {"activation": "tanh"}),
    Piece("BCE", [(LAYERS, ["sigmoid_forward", "sigmoid_backward"]), (LOSSES, ["binary_cross_entropy"])],
          "nn.Sigmoid() + nn.BCELoss()  # one-hot targets",
          "l_n = -[y_n log x_n + (1 - y_n) log(1 - x_n)], mean over n", {"loss": "bce"}),
    Piece("BCE with logits", [(LOSSES, ["binary_cross_entropy_with_logits"])], "nn.BCEWithLogitsLoss()",
          "l_n = -[y_n log sigma(x_n) + (1 - y_n) log(1 - sigma(x_n))], mean over n", {"loss": "bce-logits"}),
    Piece("MSE", [(LOSSES, ["mse"])], "nn.MSELoss()", "l_n = (x_n - y_n)^2, mean over n", {"loss": "mse"}),
    Piece("SGD momentum", [(OPTIM, ["SGD"])], "torch.optim.SGD(params, lr, momentum=0.9)",
          "b_t = mu b_{t-1} + (1 - tau) g_t (b_1 = g_1); theta_t = theta_{t-1} - gamma b_t",
          {"momentum": 0.9, "lr": 0.05}),
    Piece("Nesterov", [(OPTIM, ["SGD"])], "torch.optim.SGD(params, lr, momentum=0.9, nesterov=True)",
          "b_t = mu b_{t-1} + g_t; g_t = g_t + mu b_t; theta_t = theta_{t-1} - gamma g_t",
          {"momentum": 0.9, "nesterov": True, "lr": 0.05}),
    Piece("weight decay", [(OPTIM, ["SGD"])], "torch.optim.SGD(params, lr, weight_decay=5e-3)",
          "g_t = grad + lambda theta_{t-1}; theta_t = theta_{t-1} - gamma g_t", {"weight_decay": 5e-3, "lr": 0.1}),
    Piece("Adam", [(OPTIM, ["Adam"])], "torch.optim.Adam(params)  # lr 1e-3",
          "m_t = b1 m + (1 - b1) g; v_t = b2 v + (1 - b2) g^2; "
          "theta -= gamma m_t/(1 - b1^t) / (sqrt(v_t/(1 - b2^t)) + eps)",
          {"optimizer": "adam"}),
    Piece("AdamW", [(OPTIM, ["AdamW"])], "torch.optim.AdamW(params)  # lr 1e-3, weight_decay 1e-2",
          "theta_t = theta_{t-1} - gamma lambda theta_{t-1}; then Adam's m_t, v_t and step", {"optimizer": "adamw"}),
    Piece("cosine schedule", [(SCHEDULES, ["CosineAnnealingLR"])],
          "torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)  # .step() once per epoch",
          "eta_t = eta_min + (eta_max - eta_min)(1 + cos(pi T_cur / T_max)) / 2", {"schedule": "cosine"}),
]


def flags_text(flags):
    return " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in flags.items())


def _summarise(result, config, flags, n_train, n_test):
    """Figures for one run: the worst checked record (the worst failing one if any fails), then
    each noise-driven record by itself; every one carries the run's verdict."""
    checked = [r for r in result.records if r.tolerance is not None and r.note != NOISE_DRIVEN]
    failing = [r for r in checked if not r.ok]
    if failing:
        worst = max(failing, key=lambda r: getattr(r, r.checked) / r.tolerance if r.tolerance else math.inf)
    else:
        worst = max((r for r in checked if r.checked == "max_rel_err"), key=lambda r: r.max_rel_err)
    run_text = (f"float64, {result.steps} steps of batch {config.batch_size} on {n_train} training images, {n_test} "
                f"test images, seed {config.seed}, lr {config.lr:g}, flags {flags_text(flags)}; "
                f"run verdict {'ok' if result.ok else 'FAILED'}")
    at = f" at step {worst.step}" if worst.step else ""
    figures = [Figure(worst, f"{worst.check}, {worst.name}{at}: the worst of the run's {len(checked)} checked "
                             f"records{' (failing)' if failing else ''}; {run_text}", result.ok)]
    figures += [Figure(r, f"{r.check}, {r.name}: {NOISE_DRIVEN} (zero gradient in exact arithmetic ahead of batch "
                          f"norm, Adam steps on the noise); {run_text}", result.ok)
                for r in result.records if r.note == NOISE_DRIVEN]
    return figures


def measure_toolbox(train, test, steps=20, limit=None, seed=0):
    """Each piece of PIECES with its own figures from parity.run.run(Config(dtypes=("float64",),
    steps=steps, seed=seed, **flags), (train cut to limit, test)), one run per flags set."""
    X, y = train
    if limit is not None:
        X, y = X[:limit], y[:limit]
    pieces = []
    for piece in PIECES:
        figures = []
        for flags in (piece.flags, *piece.also):
            config = Config(dtypes=("float64",), steps=steps, seed=seed, limit=limit, **flags)
            with torch.random.fork_rng(devices=[]):
                result, = run(config, ((X, y), test))
            figures += _summarise(result, config, flags, len(X), len(test[0]))
        pieces.append(dataclasses.replace(piece, figures=figures))
    return pieces
