"""The machine a benchmark ran on: CPU, GPU, versions, pinned thread counts, TF32; and its slug.

Part of `python -m benchmarks`. Thread counts are pinned before anything is timed (NumPy's BLAS
through threadpoolctl, torch through torch.set_num_threads) and read back afterwards, so the
report states what was in force rather than what was asked for. TF32 is switched off: the
benchmark is a float32 benchmark, and the step check compares against NumPy in float32.
"""

import importlib
import os
import platform
import re

import numpy as np
import torch

from common.errors import InputError
from common.machine import available_cpus, blas_libraries, cpu_model

# ----------------------------------------------------------------------------- optional imports


def require(module, purpose):
    """Import a module from the `bench`/`dev` extra, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{module} is needed to {purpose}: pip install -e '.[dev]' "
                         f"(or pip install {module})") from None


# ----------------------------------------------------------------------------- threads and TF32


def pin_threads(n_threads):
    """Pin NumPy's BLAS and torch's intra-op pool to n_threads; return the threadpoolctl limiter.

    The limiter holds the BLAS limit until restore_original_limits() is called on it.
    """
    threadpoolctl = require("threadpoolctl", "pin NumPy's BLAS thread count")
    limiter = threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas")
    torch.set_num_threads(n_threads)
    return limiter


def pin_float32():
    """Plain IEEE float32 matrix products on the GPU: no TF32 (torch's default, made explicit)."""
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ----------------------------------------------------------------------------- describing the machine


def load_average():
    """The 1-minute load average (None where the OS has none): other work skews CPU timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cuda_note():
    """None where CUDA runs; otherwise why the CUDA rows cannot be measured here."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a build without CUDA support "
                f"(torch.cuda.is_available() is False)")
    return (f"torch {torch.__version__} has CUDA {torch.version.cuda} but sees no CUDA device "
            f"(torch.cuda.is_available() is False)")


def describe_machine():
    """The `machine` object of the JSON output; call after pin_threads and pin_float32."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    blas = blas_libraries()
    numpy_blas = [lib["threads"] for lib in blas if lib["numpy"]] or [lib["threads"] for lib in blas]
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpus_available": available_cpus(),
        "gpu": gpu,
        "cuda": torch.version.cuda,
        "cuda_note": cuda_note(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "threads": {
            "numpy_blas": max(numpy_blas, default=None),
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
        },
        "blas": blas,
        "tf32": {
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }


def slugify(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"


def machine_slug(machine):
    """A file-name stem naming the machine: the GPU where there is one, else CPU and core count."""
    if machine.get("gpu"):
        return slugify(machine["gpu"])
    return slugify(f"{machine['cpu']} {machine['cores']}cpu")
