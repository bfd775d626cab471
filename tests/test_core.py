"""The core pair, scratch/mlp.py and torchimpl/mlp.py, as a reader and a user meet it.

Each file holds the whole default recipe on one screen, the two read section by section side
by side, the toolbox builds on them (not the other way), and each runs as a program whose
figures are the configurable program's with its defaults.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = {"scratch": ROOT / "scratch" / "mlp.py", "torchimpl": ROOT / "torchimpl" / "mlp.py"}
MAX_LINES = 150  # one screen, docstrings and comments included
BANNER = re.compile(r"^# -{20,} (.+)$", re.M)


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300)


def definitions(path):
    """Top-level functions and classes, in source order."""
    return [node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef))]


@pytest.mark.parametrize("twin", CORE)
def test_each_core_file_fits_on_one_screen(twin):
    lines = CORE[twin].read_text().count("\n")
    assert lines <= MAX_LINES, f"{CORE[twin]} has {lines} lines, more than {MAX_LINES}"


def test_the_core_files_have_the_same_sections_in_the_same_order():
    sections = {twin: BANNER.findall(path.read_text()) for twin, path in CORE.items()}
    assert sections["scratch"] == sections["torchimpl"]
    assert sections["scratch"][0] == "the network" and sections["scratch"][-1] == "the program"


def test_the_functions_both_core_files_define_come_in_the_same_order():
    scratch, torch_side = definitions(CORE["scratch"]), definitions(CORE["torchimpl"])
    assert [n for n in scratch if n in torch_side] == [n for n in torch_side if n in scratch]
    assert {"init_model", "train_epoch", "evaluate", "main"} <= set(scratch) & set(torch_side)


@pytest.mark.parametrize("twin", CORE)
def test_the_core_imports_no_toolbox_and_no_extras(twin):
    imported = set()
    for node in ast.walk(ast.parse(CORE[twin].read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not {m for m in imported if ".toolbox" in m or ".extras" in m or m.endswith(".train")}, imported


@pytest.mark.parametrize("twin", CORE)
def test_the_core_has_no_option_branches_and_no_dispatch_tables(twin):
    tree = ast.parse(CORE[twin].read_text())
    tables = [node for node in ast.walk(tree) if isinstance(node, ast.Dict) and node.keys]
    assert not tables, f"{CORE[twin]} looks functions up in a dict"
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    names |= {node.arg for node in ast.walk(tree) if isinstance(node, (ast.arg, ast.keyword)) and node.arg}
    for option in ("batchnorm", "dropout", "momentum", "activation", "adam", "schedule"):
        used = sorted(name for name in names if option in name.lower())
        assert not used, f"{CORE[twin]} uses {used}: options belong to the toolbox"


@pytest.mark.parametrize("core, program", [("scratch.mlp", "scratch.train"),
                                           pytest.param("torchimpl.mlp", "torchimpl.train", marks=pytest.mark.torch)])
def test_the_core_program_prints_what_the_training_program_prints_with_its_defaults(core, program):
    """The toolbox builds on the core: with every option at its default, the configurable
    program trains the very same network on the very same batches."""
    ours, theirs = run(core, "--epochs", "2", "--limit", "1000"), run(program, "--epochs", "2", "--limit", "1000")
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    strip = lambda text: [re.sub(r"  \S+s$", "", line) for line in text.splitlines()[1:]]  # noqa: E731
    assert strip(ours.stdout) == strip(theirs.stdout) and len(strip(ours.stdout)) == 2
    assert ours.stdout.splitlines()[0] == f"{core}: 784-128-64-10 relu, sgd lr 0.5, ce loss, batch 64, float32, " \
                                          f"1000 train / 10000 test images"


@pytest.mark.parametrize("core", ["scratch.mlp", pytest.param("torchimpl.mlp", marks=pytest.mark.torch)])
def test_the_core_program_refuses_the_toolbox_flags(core):
    """The core has a handful of flags (tests/test_programs.py checks their bad values); the
    toolbox's belong to python -m scratch.train and torchimpl.train."""
    result = run(core, "--optimizer", "adam")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unrecognized arguments: --optimizer adam" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("where", ["core", "toolbox"])
def test_the_training_backward_skips_the_input_gradient_and_keeps_every_parameter_gradient(where, monkeypatch):
    """A training step needs no dL/dX: backward leaves it None (torch's X.grad without
    requires_grad) and skips its product, with the parameter gradients unchanged to the bit."""
    import numpy as np

    import scratch.mlp as mlp
    from scratch.toolbox import model as toolbox

    rng = np.random.default_rng(0)
    params = mlp.init_model([20, 8, 6, 4], rng)
    X, y = rng.random((5, 20), dtype=np.float32), rng.integers(0, 4, 5)
    forward, backward = (mlp.forward, mlp.backward) if where == "core" else (toolbox.forward, toolbox.backward)
    logits, caches = forward(params, X)
    _, dlogits = mlp.softmax_cross_entropy(logits, y)
    with_dX, dX = backward(dlogits, caches, input_grad=True)
    calls = []
    real = mlp.linear_backward  # watched, not replaced: the skip under test is the real one's
    monkeypatch.setattr(mlp, "linear_backward",
                        lambda dout, cache, need_dx=True: calls.append(need_dx) or real(dout, cache, need_dx))
    grads, none = backward(dlogits, caches)
    assert none is None and dX.shape == X.shape
    assert list(grads) == list(with_dX) == ["W3", "b3", "W2", "b2", "W1", "b1"]
    for name in params:
        np.testing.assert_array_equal(grads[name], with_dX[name], err_msg=name)
    assert calls == [True, True, False]  # layers 3, 2, 1: no dx product for the inputs
