"""Parity for the reader's own PyTorch MLP: python -m parity --module FILE.py:NAME and compare_module.

The modules are written here the way the chapters write them; each must pass float64 parity
within the usual bounds (parity/tolerances.py), with its own tensor names in the records, and
the classic bugs get a verdict or a refusal that names what is wrong.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from parity.module import compare_module
from parity.run import load_data, Config

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread_per_library")


class Textbook(nn.Module):  # the chapters' style: attributes, F.relu in forward
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 32), nn.Linear(32, 16), nn.Linear(16, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Layers(nn.Module):  # a ModuleList in a loop, torch.relu and x.relu()
    def __init__(self, sizes=(784, 24, 12, 10)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        x = torch.relu(self.layers[0](x))
        x = self.layers[1](x).relu()
        return self.layers[2](x)


class Regularised(nn.Module):  # batch norm before the activation, dropout after it
    def __init__(self):
        super().__init__()
        self.fc1, self.bn1, self.drop1 = nn.Linear(784, 32), nn.BatchNorm1d(32), nn.Dropout(0.2)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.drop1(F.relu(self.bn1(self.fc1(x)))))


def flatten_first():  # a factory: nn.Sequential that starts with nn.Flatten
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


class SoftmaxInForward(Textbook):  # the classic bug: probabilities into nn.CrossEntropyLoss
    def forward(self, x):
        return F.softmax(super().forward(x), dim=1)


@pytest.fixture(scope="module")
def mnist():
    (X, y), (X_test, y_test) = load_data(Config(limit=640))
    return X, y, X_test[:2000], y_test[:2000]


@pytest.mark.parametrize("build", [Textbook, Layers, flatten_first], ids=["attributes", "module-list", "flatten-first"])
def test_a_readers_mlp_passes_float64_parity_with_its_own_names(mnist, build):
    torch.manual_seed(0)
    report = compare_module(build(), *mnist, steps=20, dtypes=("float64",))
    assert report.ok, [vars(r) for r in report.records if not r.ok]
    assert report.mapping[0].endswith("-> W1") and all(" -> " in line for line in report.mapping)
    named = [r.name for r in report.records if r.name.startswith(("dW1", "W1"))]
    user_key = report.mapping[0].split(" -> ")[0]
    assert named and all(f"({user_key}{'.grad' if n.startswith('d') else ''}" in n for n in named), named


def test_batch_norm_dropout_and_adam_pass_on_a_readers_module(mnist):
    torch.manual_seed(0)
    report = compare_module(Regularised(), *mnist, steps=20, optimizer="adamw", dtypes=("float64",))
    assert report.ok, [vars(r) for r in report.records if not r.ok]
    assert "bn1.weight -> gamma1" in report.mapping and "bn1.running_mean -> running_mean1" in report.mapping


def test_a_softmax_before_the_loss_fails_with_a_verdict_that_says_why(mnist):
    torch.manual_seed(0)
    report = compare_module(SoftmaxInForward(), *mnist, steps=5, dtypes=("float64",))
    assert not report.ok
    assert any("softmax" in verdict and "logits" in verdict for verdict in report.verdicts), report.verdicts


def run(*args):
    return subprocess.run([sys.executable, "-m", "parity", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT)


def write(tmp_path, source):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(source))
    return path


TEXTBOOK_FILE = """
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self, hidden=32):
            super().__init__()
            self.fc1 = nn.Linear(784, hidden)
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)))
    """


def test_the_program_prints_the_mapping_and_passes_a_textbook_class(tmp_path):
    path = write(tmp_path, TEXTBOOK_FILE)
    result = run("--module", f"{path}:Net", "--module-args", '{"hidden": 24}', "--steps", "10", "--limit", "640")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fc1.weight -> W1" in result.stdout and "fc2.bias -> b2" in result.stdout
    assert "784-24-10 relu" in result.stdout and "W1 (fc1.weight)" in result.stdout
    assert "parity PASS" in result.stdout.splitlines()[-1]


def test_the_program_says_json_with_the_mapping(tmp_path):
    path = write(tmp_path, TEXTBOOK_FILE)
    result = run("--module", f"{path}:Net", "--steps", "5", "--limit", "640", "--dtype", "float64", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["ok"] and out["mapping"][0] == "fc1.weight -> W1" and out["config"]["layer_sizes"] == [784, 32, 10]


@pytest.mark.parametrize("source, message", [
    ("""
     import torch.nn as nn
     class Net(nn.Module):
         def __init__(self):
             super().__init__()
             self.fc1, self.fc2 = nn.Linear(784, 32), nn.Linear(32, 10)
         def forward(self, x):
             return self.fc2(self.fc1(x))
     """, "fc1"),
    ("""
     import torch.nn as nn
     def Net():
         return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(2704, 10))
     """, "Conv2d"),
])
def test_the_program_refuses_what_scratch_cannot_twin_naming_the_node(tmp_path, source, message):
    path = write(tmp_path, source)
    result = run("--module", f"{path}:Net", "--steps", "5", "--limit", "640")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


def test_flags_that_contradict_the_module_are_a_verdict_not_a_silent_override(tmp_path):
    path = write(tmp_path, TEXTBOOK_FILE)
    result = run("--module", f"{path}:Net", "--hidden", "64", "--steps", "5", "--limit", "640")
    assert result.returncode == 2
    assert "--hidden says [64]" in result.stderr and "784-32-10" in result.stderr


def test_a_bad_module_spec_is_one_line(tmp_path):
    for spec in (f"{tmp_path}/missing.py:Net", "json:dumps", "no_such_package.mod:Net"):
        result = run("--module", spec, "--steps", "1", "--limit", "640")
        assert result.returncode == 2 and "Traceback" not in result.stderr, (spec, result.stderr)
