"""Will a network fit? Its parameters' bytes against this machine's memory, checked before any
array is allocated, so a width of 10**9 is one line instead of an allocator's traceback.

The programs call check_memory from common.cli.parse_args and build the network inside
allocating(); the estimators call check_memory at fit time. No NumPy, no torch.
"""

import contextlib
import math
import os
import re

from common.errors import InputError

ITEMSIZE = {"float32": 4, "float64": 8}


def parameter_bytes(sizes, dtype, batchnorm=False):
    """The bytes of a network's weights and biases (and batch norm's four vectors per hidden layer)."""
    count = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    return (count + 4 * sum(sizes[1:-1]) * bool(batchnorm)) * ITEMSIZE[dtype]


def physical_memory():
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def byte_text(count):
    """A byte count in binary units, three significant digits: 5.70 TiB, 23.4 GiB."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    power = min(int(math.log(max(count, 1), 1024)), len(units) - 1)
    value = count / 1024 ** power
    return f"{value:.{0 if power == 0 or value >= 100 else 1 if value >= 10 else 2}f} {units[power]}"


def _network_text(sizes, dtype, batchnorm):
    return (f"the network {'-'.join(map(str, sizes))} needs {byte_text(parameter_bytes(sizes, dtype, batchnorm))} "
            f"for its {dtype} parameters")


def check_memory(sizes, dtype, batchnorm=False, remedy="use smaller --hidden widths"):
    """Refuse, before allocating anything, a network whose parameters alone exceed this
    machine's memory: NumPy's and torch's allocators would fail with a traceback, or swap."""
    have = physical_memory()
    if have is not None and parameter_bytes(sizes, dtype, batchnorm) > have:
        raise InputError(f"{_network_text(sizes, dtype, batchnorm)}; this machine has {byte_text(have)}: {remedy}")


@contextlib.contextmanager
def allocating(sizes, dtype, batchnorm=False, remedy="use smaller --hidden widths"):
    """check_memory, then run the block that builds the network; an allocation that fails all
    the same (MemoryError, torch's RuntimeError "can't allocate memory" or "out of memory")
    becomes the same one-line InputError."""
    check_memory(sizes, dtype, batchnorm, remedy)
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not re.search(r"alloc|out of memory", str(err), re.IGNORECASE):
            raise
        raise InputError(f"{_network_text(sizes, dtype, batchnorm)}, which could not be allocated here: "
                         f"{remedy}") from None
