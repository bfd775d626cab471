"""The twins stay twins: the same public names in the same order, and no torch in scratch/."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from common.twins import EXTRA_PARAMETERS, ONE_SIDED

ROOT = Path(__file__).resolve().parent.parent
TWIN_FILES = ["mlp", "data", "train", "toolbox.model", "extras.datasets", "extras.checkpoint", "extras.estimator"]


def public_names(module_name):
    """Functions and classes defined in the module itself, in source order."""
    module = importlib.import_module(module_name)
    own = [(name, obj) for name, obj in vars(module).items()
           if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
           and obj.__module__ == module_name]
    return [name for name, obj in sorted(own, key=lambda item: inspect.getsourcelines(item[1])[1])]


@pytest.mark.torch  # imports the torchimpl modules
@pytest.mark.parametrize("stem", TWIN_FILES)
def test_twin_files_expose_the_same_names_in_the_same_order(stem):
    left, right = public_names(f"scratch.{stem}"), public_names(f"torchimpl.{stem}")
    shared_left = [n for n in left if f"scratch.{stem}.{n}" not in ONE_SIDED]
    shared_right = [n for n in right if f"torchimpl.{stem}.{n}" not in ONE_SIDED]
    assert shared_left == shared_right, (
        f"scratch/{path(stem)} and torchimpl/{path(stem)} have drifted: {shared_left} vs {shared_right}; "
        f"add the missing twin or list the name in common/twins.py ONE_SIDED with its counterpart")


def path(stem):
    return stem.replace(".", "/") + ".py"


def parameters(qualified):
    """The parameter names of a function, or of a class's constructor, in order; less the
    EXTRA_PARAMETERS listed for it."""
    module, name = qualified.rsplit(".", 1)
    names = list(inspect.signature(getattr(importlib.import_module(module), name)).parameters)
    extra = EXTRA_PARAMETERS.get(qualified, ([], ""))[0]
    assert set(extra) <= set(names), f"{qualified} has lost {extra}: update common/twins.py EXTRA_PARAMETERS"
    return [n for n in names if n not in extra]


@pytest.mark.torch
@pytest.mark.parametrize("stem", TWIN_FILES)
def test_shared_names_take_the_same_parameters_in_the_same_order(stem):
    shared = [n for n in public_names(f"scratch.{stem}") if n in public_names(f"torchimpl.{stem}")]
    for name in shared:
        left, right = parameters(f"scratch.{stem}.{name}"), parameters(f"torchimpl.{stem}.{name}")
        assert left == right, (f"{name} takes {left} in scratch/{path(stem)} but {right} in torchimpl/"
                               f"{path(stem)}: give both the same parameters, or list the difference "
                               f"in common/twins.py EXTRA_PARAMETERS with its reason")


@pytest.mark.torch
def test_one_sided_names_still_exist():
    for qualified in [*ONE_SIDED, *EXTRA_PARAMETERS]:
        module, name = qualified.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), f"{qualified} is gone: update common/twins.py"


def test_scratch_never_imports_torch():
    for path in sorted((ROOT / "scratch").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{path} imports torch"


def test_common_imports_neither_numpy_nor_torch():
    for path in sorted((ROOT / "common").rglob("*.py")):
        source = path.read_text()
        assert "import torch" not in source and "import numpy" not in source, path


def test_neither_twin_imports_the_other_or_the_floors_above():
    for twin, others in (("scratch", ("torchimpl", "parity", "benchmarks")),
                         ("torchimpl", ("scratch", "parity", "benchmarks"))):
        for path in sorted((ROOT / twin).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    assert not any(n.split(".")[0] in others for n in names), f"{path} imports {names}"
