"""Shared test settings: hypothesis runs derandomized, so CI draws the same examples every time."""

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("deterministic")
