"""Parity: the NumPy twin and the PyTorch twin, started from the same weights, compared tensor by tensor.

Start at parity/core.py: the core pair (scratch/mlp.py, torchimpl/mlp.py) on one batch, in about
80 lines, every tensor compared by name; `python -m parity` prints it first. The rest is layered
on top of that idea: trajectories over many training steps (compare.py, run.py), the toolbox's
layers, losses and optimizers (steps.py, convert.py), the tolerances and the rounding noise
they allow for (tolerances.py), the tables and JSON (report.py, __main__.py), and the study page
of `python -m parity --html` (align.py pairs the core files row by row, study_figures.py and
study_toolbox.py measure each row's figure, study_page.py renders it, study.py runs it), and
the reader's own module under `python -m parity --module FILE.py:NAME` or
parity.compare_module(model, X, y, ...) (trace.py reads its structure with torch.fx, module.py
runs the usual checks on it).
"""


def __getattr__(name):
    """parity.compare_module, for a notebook: imported on first use (it brings torch.fx along)."""
    if name == "compare_module":
        from parity.module import compare_module

        return compare_module
    raise AttributeError(f"module 'parity' has no attribute {name!r}")
