"""The machine a figure was measured on, as far as neither twin's library is needed to say it:
the CPU's name, the CPUs this process may use, and the BLAS libraries loaded with their threads.

Used by benchmarks/machine.py (which adds torch's view: threads, CUDA, TF32) and by the study
page (parity/study.py). threadpoolctl is a runtime dependency; it reads the loaded libraries
without importing NumPy itself.
"""

import os
import platform


def available_cpus():
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model():
    """The CPU's marketing name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def blas_libraries():
    """The BLAS libraries loaded in this process with their thread counts, as threadpoolctl sees them."""
    from threadpoolctl import threadpool_info

    return [{"library": info.get("internal_api"), "version": info.get("version"),
             "architecture": info.get("architecture"), "threads": info.get("num_threads"),
             "numpy": "numpy" in str(info.get("filepath", ""))}
            for info in threadpool_info() if info.get("user_api") == "blas"]
