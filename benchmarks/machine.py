"""The machine a benchmark ran on: CPU, GPU, versions, pinned thread counts, TF32; and its slug.

Part of `python -m benchmarks`. Thread counts are pinned before anything is timed (NumPy's BLAS
through threadpoolctl, torch through torch.set_num_threads) and read back afterwards, so the
report states what was in force rather than what was asked for. TF32 is switched off: the
benchmark is a float32 benchmark, and the step check compares against NumPy in float32.
"""

import importlib
import importlib.metadata
import os
import platform
import re
import sys

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


def check_threads(n_threads):
    """Refuse more threads than this process may run on: they would only take turns (a run at
    --threads 100000 took 28 times as long an epoch)."""
    if n_threads > available_cpus():
        raise InputError(f"--threads {n_threads} exceeds the {available_cpus()} CPUs this process may "
                         f"use: give at most {available_cpus()}")


def pin_threads(n_threads):
    """Pin NumPy's BLAS and torch's intra-op pool to n_threads; return the threadpoolctl limiter.

    The limiter holds the BLAS limit until restore_original_limits() is called on it.
    """
    threadpoolctl = require("threadpoolctl", "pin NumPy's BLAS thread count")
    limiter = threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas")
    torch.set_num_threads(n_threads)
    return limiter


FLOAT32_SETTING = "torch.set_float32_matmul_precision('highest')"


def pin_float32():
    """Plain IEEE float32 matrix products on the GPU: no TF32 (torch's default, made explicit).

    One API only. torch 2.9 added per-backend flags (torch.backends.cuda.matmul.fp32_precision)
    beside the legacy ones (allow_tf32), and refuses to read a state that the two APIs set
    differently: setting the legacy cuBLAS flag beside the new one makes a later read raise
    (inductor reads allow_tf32 when it compiles). set_float32_matmul_precision is in every torch
    from 2.1 through 2.14 and, from 2.9 on, sets both states consistently. cuDNN's TF32 flag is
    left as torch has it: it governs convolutions and RNNs, and this network runs neither.
    What was set is FLOAT32_SETTING, which tf32_state records.
    """
    torch.set_float32_matmul_precision("highest")


def check_device(name):
    """torch.device(name), or one line saying why this machine has no such device."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise InputError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        note = cuda_note()
        if note is not None:
            raise InputError(f"device {name!r} asked for but {note}: use cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {name!r} asked for but this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}: use one of those, or cuda")
    return device


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
        "scikit_learn": package_version("scikit-learn"),
        "tf32": tf32_state(),
    }


def package_version(distribution):
    """The installed version of a distribution, without importing it; None where it is absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def tf32_state():
    """The TF32 flags as torch reports them after pin_float32, and the one call that set them.

    Each flag is read on its own: a state that some other code set through both APIs makes torch
    refuse the read, and the record then says so instead of failing the run.
    """
    def read(getter):
        try:
            return getter()
        except RuntimeError as err:
            return f"unreadable: {str(err).splitlines()[0][:120]}"

    new_api = getattr(torch.backends.cuda.matmul, "fp32_precision", None) is not None
    state = {
        "set": FLOAT32_SETTING,
        "cuda_matmul_allow_tf32": read(lambda: bool(torch.backends.cuda.matmul.allow_tf32)),
        "cudnn_allow_tf32": read(lambda: bool(torch.backends.cudnn.allow_tf32)),
        "float32_matmul_precision": read(torch.get_float32_matmul_precision),
    }
    if new_api:  # torch 2.9 on
        state["cuda_matmul_fp32_precision"] = read(lambda: torch.backends.cuda.matmul.fp32_precision)
    return state


def slugify(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "machine"


def machine_slug(machine):
    """A file-name stem naming the machine: the GPU where there is one, else CPU and core count."""
    if machine.get("gpu"):
        return slugify(machine["gpu"])
    return slugify(f"{machine['cpu']} {machine['cores']}cpu")


# ----------------------------------------------------------------------------- python -m benchmarks.machine


def versions():
    """One line per piece of the software stack and per device: what benchmarks/gpu-run.sh prints first."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    lines = [f"python {platform.python_version()} ({sys.executable})", f"numpy {np.__version__}",
             f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}, cuDNN {cudnn or 'none'})"]
    lines += [f"{name} {package_version(name) or 'not installed'}"
              for name in ("scikit-learn", "triton", "matplotlib", "threadpoolctl", "pytest")]
    lines.append(f"CPU {cpu_model()}, {os.cpu_count()} logical CPUs, {available_cpus()} available")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability "
                         f"{p.major}.{p.minor}, {p.multi_processor_count} multiprocessors")
    else:
        lines.append(f"no CUDA device: {cuda_note()}")
    return lines


if __name__ == "__main__":
    print("\n".join(versions()))
