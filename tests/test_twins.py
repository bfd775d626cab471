"""The twins stay twins: the same public names in the same order, and no torch in scratch/."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWIN_FILES = ["data", "train", "toolbox.model", "extras.datasets", "extras.checkpoint", "extras.estimator"]

# Names that exist on one side only, because the other side gets them from torch. Each entry
# says what stands in its place; any other one-sided name fails the test.
ONE_SIDED = {
    "scratch.data.iterate_minibatches": "torchimpl.data.make_loader (a DataLoader)",
    "torchimpl.data.make_loader": "scratch.data.iterate_minibatches",
    "torchimpl.data.torchvision_datasets": "nothing: torchvision is the torch side's optional reader",
    "scratch.toolbox.model.Arch": "the keyword arguments of MLP.__init__",
    "scratch.toolbox.model.check_layer_sizes": "the check inside MLP.__init__",
    "scratch.toolbox.model.init_buffers": "nn.BatchNorm1d's own running_mean and running_var buffers",
    "scratch.toolbox.model.init_params": "nn.Linear's own initialisation in MLP.__init__",
    "scratch.toolbox.model.layer_sizes_of": "MLP.layer_sizes",
    "scratch.toolbox.model.count_params": "sum(p.numel() for p in model.parameters())",
    "scratch.toolbox.model.forward": "MLP.forward",
    "scratch.toolbox.model.backward": "loss.backward() (autograd)",
    "scratch.toolbox.model.predict": "model(x).argmax(dim=1)",
    "torchimpl.toolbox.model.MLP": "scratch.toolbox.model's functions",
    "torchimpl.train.pick_device": "nothing: NumPy runs on the CPU only",
    "scratch.extras.checkpoint.TorchUnpickler": "torch.load(weights_only=True), which reads torch.save's files",
}


def public_names(module_name):
    """Functions and classes defined in the module itself, in source order."""
    module = importlib.import_module(module_name)
    own = [(name, obj) for name, obj in vars(module).items()
           if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
           and obj.__module__ == module_name]
    return [name for name, obj in sorted(own, key=lambda item: inspect.getsourcelines(item[1])[1])]


@pytest.mark.parametrize("stem", TWIN_FILES)
def test_twin_files_expose_the_same_names_in_the_same_order(stem):
    left, right = public_names(f"scratch.{stem}"), public_names(f"torchimpl.{stem}")
    shared_left = [n for n in left if f"scratch.{stem}.{n}" not in ONE_SIDED]
    shared_right = [n for n in right if f"torchimpl.{stem}.{n}" not in ONE_SIDED]
    assert shared_left == shared_right, (
        f"scratch/{stem}.py and torchimpl/{stem}.py have drifted: {shared_left} vs {shared_right}; "
        f"add the missing twin or list the name in ONE_SIDED with its counterpart")


def test_one_sided_names_still_exist():
    for qualified in ONE_SIDED:
        module, name = qualified.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), name), f"{qualified} is gone: update ONE_SIDED"


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
