"""python -m parity --html PATH: measure every row of the study page, render it, write it.

The page (parity/study_page.py) shows the core pair aligned by parity/align.py, each row with
the figure parity/study_figures.py measures for it in this very run, then the toolbox pieces
with their own short float64 runs. Only the flags that mean something for the core pair apply:
--dtype, --seed, --limit, --steps, --hidden, --lr, --batch-size, --data-dir.
"""

import math
import platform
import time

import numpy as np
import torch

from common.outputs import atomic_write, check_outputs
from common.cli import N_CLASSES, N_FEATURES
from common.errors import InputError
from common.machine import available_cpus, blas_libraries, cpu_model
from parity import align, study_figures, study_page, study_toolbox
from parity.run import Config, load_data

TOOLBOX_STEPS, TOOLBOX_LIMIT = 20, 640  # each piece's own float64 run: 20 steps on 640 images
CORE_FLAGS = {"activation": "relu", "batchnorm": False, "dropout": 0.0, "loss": "ce", "optimizer": "sgd",
              "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "schedule": "none", "preset": None,
              "data": "mnist", "json": False, "plot": None}


def refuse_other_flags(args):
    """--html shows the default recipe's core pair and every toolbox piece: a toolbox flag, a
    preset, --json or --plot would be silently ignored, so each is refused by name."""
    for name, default in CORE_FLAGS.items():
        if getattr(args, name, default) != default:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} does not apply to --html: the page shows the core pair and every "
                             f"toolbox piece by itself; drop {flag}")


def machine():
    """What the page says about where it was measured."""
    blas = ", ".join(f"{lib['library']} {lib['version']} ({lib['threads']} threads)"
                     for lib in blas_libraries()) or "unknown"
    return {"CPU": f"{cpu_model()}, {available_cpus()} CPUs available", "platform": platform.platform(),
            "Python": platform.python_version(), "NumPy": np.__version__, "torch": torch.__version__,
            "BLAS (NumPy), threads by default": blas, "threads while measuring": "1 BLAS thread, 1 torch thread (parity pins them)"}


def write_page(args, path):
    """Measure, render and write the page to path; return the number of figures out of tolerance."""
    check_outputs({"--html": path})
    refuse_other_flags(args)
    dtype = args.dtype or "float64"
    layer_sizes = (N_FEATURES, *args.hidden, N_CLASSES)
    config = Config(layer_sizes=layer_sizes, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                    limit=args.limit, data_dir=args.data_dir, dtypes=(dtype,))
    (X, y), (X_test, y_test) = load_data(config)
    steps = args.steps or math.ceil(len(X) / config.batch_size)
    start = time.perf_counter()
    figures, losses = study_figures.measure_core(X, y, X_test, y_test, layer_sizes=layer_sizes, seed=args.seed,
                                                 lr=config.lr, batch_size=config.batch_size, steps=steps,
                                                 dtype=dtype)
    toolbox_train = X[:TOOLBOX_LIMIT], y[:TOOLBOX_LIMIT]
    pieces = study_toolbox.measure_toolbox(toolbox_train, (X_test, y_test), steps=TOOLBOX_STEPS, seed=args.seed)
    seconds = time.perf_counter() - start
    fd = figures.pop("finite differences", [])
    alignment = align.align("scratch/mlp.py", "torchimpl/mlp.py")
    about = {"network": "-".join(map(str, layer_sizes)) + ", ReLU, softmax cross-entropy, SGD lr "
                        f"{config.lr:g}, batch {config.batch_size}",
             "core pair": f"{dtype}, one batch, then {steps} steps from the same weights on the same batches",
             "data": f"MNIST, {len(X)} training / {len(X_test)} test images",
             "toolbox": f"float64, {TOOLBOX_STEPS} steps on the first {len(toolbox_train[0])} training images per piece",
             "seed": args.seed, "measured in": f"{seconds:.1f} s"}
    page = study_page.render(alignment, figures, losses, pieces, about, machine(), fd)
    atomic_write(path, lambda f: f.write(page.encode("utf-8")))
    every = [f for fs in figures.values() for f in fs] + [f for p in pieces for f in p.figures] + list(fd)
    return sum(not f.record.ok for f in every)
