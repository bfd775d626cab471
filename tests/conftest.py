"""Shared test settings: hypothesis runs derandomized, so CI draws the same examples every time;
tests that run both twins in one process can ask for one thread per library."""

import pytest
from hypothesis import settings

from parity.run import full_precision_one_thread

settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("deterministic")


@pytest.fixture(scope="module")
def one_thread_per_library():
    """One BLAS thread and one torch thread while both twins share this process: their two
    thread pools (OpenBLAS, OpenMP) spin against each other on a small machine and made tiny
    networks 10-100x slower. Use with pytestmark = pytest.mark.usefixtures(...)."""
    with full_precision_one_thread():
        yield
