"""--load takes the state_dict of any Linear-only MLP, written the ways readers write them.

Each module below is trained a little with torch, its state_dict saved with torch.save, then
loaded into scratch's Network and into torchimpl's MLP; both must predict the classes the
reader's own module predicts. A file that fits no mapping, or more than one, is refused in one
line naming the keys and shapes; a whole pickled module (torch.save(model)) gets the advice to
save model.state_dict(). The matching itself is common/layout.py's match_layers.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InputError
from common.layout import match_layers
from scratch.data import load_mnist
from scratch.extras import checkpoint as scratch_ckpt
from scratch.toolbox.model import Arch, Network, forward, init_buffers, init_params
from torchimpl.extras import checkpoint as torch_ckpt
from torchimpl.toolbox.model import MLP
from test_trace import ModuleListNet as ListNet  # keys layers.0.weight, layers.1.weight, ...

ROOT = Path(__file__).resolve().parent.parent
N_TEST = 500  # test images compared one by one in process
TIE = 1e-5  # logits closer than this (float32 sums of ~800 products, values of order 10) tie within rounding

pytestmark = pytest.mark.usefixtures("one_thread_per_library")


# ----------------------------------------------------------------------------- the readers' modules


class FcNet(nn.Module):
    """The textbook class: fc1, fc2, fc3 with F.relu."""

    def __init__(self, sizes):
        super().__init__()
        self.fc1 = nn.Linear(sizes[0], sizes[1])
        self.fc2 = nn.Linear(sizes[1], sizes[2])
        self.fc3 = nn.Linear(sizes[2], sizes[3])

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def flatten_sequential(sizes):
    """nn.Sequential(nn.Flatten(), nn.Linear, nn.ReLU, ...): keys 1.weight, 3.weight, ..."""
    modules = [nn.Flatten()]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        modules += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*modules[:-1])


class BatchNormNet(nn.Module):
    """fc1, bn1, fc2, bn2, fc3: batch norm between each hidden Linear and its ReLU."""

    def __init__(self, sizes):
        super().__init__()
        self.fc1, self.bn1 = nn.Linear(sizes[0], sizes[1]), nn.BatchNorm1d(sizes[1])
        self.fc2, self.bn2 = nn.Linear(sizes[1], sizes[2]), nn.BatchNorm1d(sizes[2])
        self.fc3 = nn.Linear(sizes[2], sizes[3])

    def forward(self, x):
        x = F.relu(self.bn1(self.fc1(x)))
        return self.fc3(F.relu(self.bn2(self.fc2(x))))


class BatchNormsLastNet(BatchNormNet):
    """The same network with its layers assigned kind by kind: fc1, fc2, fc3, then bn1, bn2."""

    def __init__(self, sizes):
        nn.Module.__init__(self)
        self.fc1, self.fc2 = nn.Linear(sizes[0], sizes[1]), nn.Linear(sizes[1], sizes[2])
        self.fc3 = nn.Linear(sizes[2], sizes[3])
        self.bn1, self.bn2 = nn.BatchNorm1d(sizes[1]), nn.BatchNorm1d(sizes[2])


class OutputFirstNet(nn.Module):
    """A class that assigns its output layer first: file order is not the order the layers run."""

    def __init__(self, sizes):
        super().__init__()
        self.out = nn.Linear(sizes[-2], sizes[-1])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))

    def forward(self, x):
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.out(x)


# style name -> (build(sizes), layer sizes, batchnorm, the note's mapping)
STYLES = {
    "fc1-fc2-fc3": (FcNet, [784, 64, 32, 10], False,
                    "fc1.weight -> W1, fc1.bias -> b1, fc2.weight -> W2, fc2.bias -> b2, fc3.weight -> W3, "
                    "fc3.bias -> b3"),
    "flatten-sequential": (flatten_sequential, [784, 48, 10], False,
                           "1.weight -> W1, 1.bias -> b1, 3.weight -> W2, 3.bias -> b2"),
    "module-list": (ListNet, [784, 40, 24, 16, 10], False,
                    "layers.0.weight -> W1, layers.0.bias -> b1, layers.1.weight -> W2, layers.1.bias -> b2, "
                    "layers.2.weight -> W3, layers.2.bias -> b3, layers.3.weight -> W4, layers.3.bias -> b4"),
    "batchnorm": (BatchNormNet, [784, 64, 32, 10], True,
                  "fc1.weight -> W1, fc1.bias -> b1, bn1.weight -> gamma1, bn1.bias -> beta1, "
                  "bn1.running_mean -> running_mean1, bn1.running_var -> running_var1, "
                  "bn1.num_batches_tracked -> num_batches_tracked1, fc2.weight -> W2, fc2.bias -> b2, "
                  "bn2.weight -> gamma2, bn2.bias -> beta2, bn2.running_mean -> running_mean2, "
                  "bn2.running_var -> running_var2, bn2.num_batches_tracked -> num_batches_tracked2, "
                  "fc3.weight -> W3, fc3.bias -> b3"),
    "batchnorms-last": (BatchNormsLastNet, [784, 32, 32, 10], True, None),  # the same mapping as above
    "output-first": (OutputFirstNet, [784, 64, 32, 10], False, None),
}


@pytest.fixture(scope="module")
def mnist():
    (X, y), (X_test, y_test) = load_mnist(None, "train"), load_mnist(None, "test")
    return (X[:4000], y[:4000]), (X_test, y_test)


def as_input(module, X):
    """The images as the reader's module takes them: 1x28x28 where it flattens them itself."""
    x = torch.from_numpy(X)
    return x.reshape(-1, 1, 28, 28) if isinstance(module, nn.Sequential) else x


def trained(style, mnist, steps=120):
    """The reader's module after a few SGD steps (batch norm's running statistics moved), in eval mode."""
    build, sizes, _, _ = STYLES[style]
    torch.manual_seed(3)
    module = build(sizes)
    (X, y), _ = mnist
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(4))
    for step in range(steps):
        rows = order[(step * 64) % len(X):][:64]
        optimizer.zero_grad()
        F.cross_entropy(module(as_input(module, X[rows.numpy()])), torch.from_numpy(y[rows.numpy()])).backward()
        optimizer.step()
    return module.eval()


def logits_of(module, X):
    with torch.no_grad():
        return module(as_input(module, X)).numpy()


def clear_rows(logits):
    """Rows whose two largest logits are further apart than rounding: their argmax is well defined."""
    top = np.sort(logits, axis=1)
    return top[:, -1] - top[:, -2] > TIE * max(1.0, float(np.abs(logits).max()))


def assert_same_classes(ours, theirs):
    clear = clear_rows(theirs)
    assert clear.mean() > 0.95, "too many near-ties to compare"
    assert np.array_equal(ours.argmax(axis=1)[clear], theirs.argmax(axis=1)[clear])
    assert np.allclose(ours, theirs, rtol=0, atol=1e-4)


def scratch_network(sizes, batchnorm=False, seed=9):
    params = init_params(sizes, np.random.default_rng(seed), np.float32, batchnorm=batchnorm)
    return Network(params, Arch("relu", batchnorm), init_buffers(params))


def torch_mlp(sizes, batchnorm=False):
    torch.manual_seed(9)
    return MLP(sizes, batchnorm=batchnorm)


# ----------------------------------------------------------------------------- each style loads on both twins


@pytest.mark.parametrize("style", list(STYLES))
def test_a_readers_state_dict_loads_on_both_twins_and_predicts_the_readers_classes(style, mnist, tmp_path, capsys):
    _, sizes, batchnorm, mapping = STYLES[style]
    module = trained(style, mnist)
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    X = mnist[1][0][:N_TEST]
    theirs = logits_of(module, X)

    model = scratch_network(sizes, batchnorm)
    scratch_ckpt.load(path, model)
    ours, _ = forward(model.params, X, model.arch, model.buffers, train=False)
    assert_same_classes(ours, theirs)
    mlp = torch_mlp(sizes, batchnorm)
    torch_ckpt.load(path, mlp)
    with torch.no_grad():
        assert_same_classes(mlp.eval()(torch.from_numpy(X)).numpy(), theirs)

    notes = capsys.readouterr().err.splitlines()
    assert len(notes) == 2 and notes[0] == notes[1]  # one line, the same on both twins
    if style == "output-first":
        assert notes[0] == (f"loaded {path} (its layers matched by shape: the file lists them in another order): "
                            "hidden.0.weight -> W1, hidden.0.bias -> b1, hidden.1.weight -> W2, hidden.1.bias -> b2, "
                            "out.weight -> W3, out.bias -> b3")
    elif mapping:
        assert notes[0] == f"loaded {path}: {mapping}"
    if batchnorm:
        assert model.buffers["num_batches_tracked1"] == 120 and isinstance(model.buffers["num_batches_tracked1"], int)
        assert np.array_equal(model.buffers["running_var2"], module.bn2.running_var.numpy())
        assert mlp.net[1].num_batches_tracked.item() == 120


def test_batch_norm_layers_listed_after_the_linears_go_with_the_hidden_layers_in_order(mnist, tmp_path, capsys):
    """fc1, fc2, fc3, bn1, bn2 with equal widths: the k-th BatchNorm1d is the k-th hidden layer's."""
    module = trained("batchnorms-last", mnist)
    torch.save(module.state_dict(), tmp_path / "m.pt")
    model = scratch_network([784, 32, 32, 10], batchnorm=True)
    scratch_ckpt.load(tmp_path / "m.pt", model)
    note = capsys.readouterr().err
    assert "fc3.bias -> b3" in note and note.index("bn1.weight -> gamma1") < note.index("fc2.weight -> W2")
    assert np.array_equal(model.params["gamma1"], module.bn1.weight.detach().numpy())
    assert np.array_equal(model.params["gamma2"], module.bn2.weight.detach().numpy())


def test_a_batch_norm_without_its_counter_loads_and_keeps_the_models(mnist, tmp_path):
    module = trained("batchnorm", mnist, steps=5)
    state = {key: value for key, value in module.state_dict().items() if not key.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pt")
    model = scratch_network([784, 64, 32, 10], batchnorm=True)
    scratch_ckpt.load(tmp_path / "old.pt", model)
    mlp = torch_mlp([784, 64, 32, 10], batchnorm=True)
    torch_ckpt.load(tmp_path / "old.pt", mlp)
    assert model.buffers["num_batches_tracked2"] == 0 and mlp.net[4].num_batches_tracked.item() == 0
    assert torch.equal(mlp.net[4].running_mean, module.bn2.running_mean)


def test_reading_a_readers_file_without_a_model_names_its_layers_in_file_order(tmp_path):
    torch.save(FcNet([6, 5, 4, 3]).state_dict(), tmp_path / "m.pt")
    for read in (scratch_ckpt.read, torch_ckpt.read):
        arrays, record = read(tmp_path / "m.pt")
        assert list(arrays) == ["W1", "b1", "W2", "b2", "W3", "b3"] and record is None
        assert tuple(arrays["W2"].shape) == (4, 5)


# ----------------------------------------------------------------------------- the programs


def run(twin, *args):
    return subprocess.run([sys.executable, "-m", f"{twin}.train", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("style", ["fc1-fc2-fc3", "flatten-sequential", "batchnorm"])
def test_both_programs_load_a_readers_file_print_the_note_and_the_readers_accuracy(style, mnist, tmp_path):
    _, sizes, batchnorm, mapping = STYLES[style]
    module = trained(style, mnist)
    path = tmp_path / "model.pt"
    torch.save(module.state_dict(), path)
    X_test, y_test = mnist[1]
    theirs = logits_of(module, X_test)
    accuracy = (theirs.argmax(axis=1) == y_test).mean()
    ties = int((~clear_rows(theirs)).sum())  # images whose class rounding may decide
    assert accuracy > 0.75  # trained: the comparison means something
    flags = ["--load", path, "--epochs", 0, "--hidden", *sizes[1:-1], "--limit", 1000, "--json"]
    flags += ["--batchnorm"] * batchnorm
    for twin in ("scratch", "torchimpl"):
        result = run(twin, *flags)
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines() == [f"loaded {path}: {mapping}"]
        record = json.loads(result.stdout.splitlines()[-1])  # stdout stays JSON: the note is on stderr
        assert record["epoch"] == 0
        # the reader's accuracy to the printed digit, but for images whose class rounding decides (none here)
        assert abs(record["test_acc"] - round(accuracy, 4)) <= ties / len(y_test) + 1e-9, (twin, record, accuracy)


def test_the_textbook_class_loads_with_the_default_flags(mnist, tmp_path):
    """The issue's case: 784-128-64-10 as fc1, fc2, fc3, loaded with no --hidden at all."""
    torch.manual_seed(0)
    torch.save(FcNet([784, 128, 64, 10]).state_dict(), tmp_path / "model.pt")
    result = run("scratch", "--load", tmp_path / "model.pt", "--epochs", 0, "--limit", 100)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"loaded {tmp_path / 'model.pt'}: fc1.weight -> W1, fc1.bias -> b1")
    assert result.stdout.splitlines()[-1].startswith("epoch 0/0  train loss ")


# ----------------------------------------------------------------------------- refusals


def refusals(path, sizes, batchnorm=False):
    """The InputError message of each twin's load."""
    messages = []
    for load, model in ((scratch_ckpt.load, scratch_network(sizes, batchnorm)),
                        (torch_ckpt.load, torch_mlp(sizes, batchnorm))):
        with pytest.raises(InputError) as err:
            load(path, model)
        messages.append(str(err.value))
    assert messages[0] == messages[1] and "\n" not in messages[0]
    return messages[0]


class ExtraBufferNet(FcNet):
    """A class that keeps its input scaling as a buffer: a tensor the MLP has no place for."""

    def __init__(self, sizes):
        super().__init__(sizes)
        self.register_buffer("scale", torch.tensor(1 / 255))


class MaskedNet(FcNet):
    """A pruning mask beside fc2's weight: the prefix fc2 is no longer a plain Linear."""

    def __init__(self, sizes):
        super().__init__(sizes)
        self.fc2.register_buffer("mask", torch.ones(sizes[2], sizes[1]))


@pytest.mark.parametrize("module, sizes, batchnorm, message", [
    (FcNet([784, 64, 32, 10]), [784, 64, 16, 10], False,
     "fc2.weight has shape (32, 64) where the network built from the flags needs W2 (16, 64): pass --hidden 64 32"),
    (FcNet([784, 64, 32, 10]), [784, 128, 32, 10], False,
     "fc1.weight has shape (64, 784) where the network built from the flags needs W1 (128, 784): pass --hidden 64 32"),
    (flatten_sequential([784, 48, 10]), [784, 48, 24, 10], False,
     "the file holds 2 Linear layers (1.weight (48, 784), 3.weight (10, 48)) where the network built from the "
     "flags has 3 Linear layers (W1 (48, 784), W2 (24, 48), W3 (10, 24)): pass --hidden 48"),
    (ListNet([784, 40, 24, 16, 10]), [784, 40, 24, 10], False,
     "the file holds 4 Linear layers (layers.0.weight (40, 784), layers.1.weight (24, 40), layers.2.weight "
     "(16, 24), layers.3.weight (10, 16)) where the network built from the flags has 3 Linear layers "
     "(W1 (40, 784), W2 (24, 40), W3 (10, 24)): pass --hidden 40 24 16"),
    (FcNet([784, 64, 32, 10]), [784, 64, 32, 10], True,
     "the file holds no BatchNorm1d layers where the network built from the flags has 2 BatchNorm1d layers "
     "(gamma1 (64,), gamma2 (32,)): drop --batchnorm"),
    (BatchNormNet([784, 64, 32, 10]), [784, 64, 32, 10], False,
     "the file holds 2 BatchNorm1d layers (bn1.weight (64,), bn2.weight (32,)) where the network built from the "
     "flags has no BatchNorm1d layers: pass --batchnorm"),
    (FcNet([25, 16, 8, 2]), [784, 16, 8, 10], False,
     "fc1.weight has shape (16, 25) where the network built from the flags needs W1 (16, 784): the file's network "
     "is 25-16-8-2, the flags build 784-16-8-10: use the --data or --preset it was trained for"),
    (ExtraBufferNet([784, 64, 32, 10]), [784, 64, 32, 10], False,
     "scale (): neither a Linear (weight 2-D, bias 1-D, one per row) nor a BatchNorm1d"),
    (MaskedNet([784, 64, 32, 10]), [784, 64, 32, 10], False,
     "fc2.weight (32, 64), fc2.bias (32,), fc2.mask (32, 64): neither a Linear"),
], ids=["narrower", "wider", "missing-layer", "extra-layer", "no-batchnorm", "unexpected-batchnorm",
        "other-data", "extra-tensor", "extra-tensor-in-a-layer"])
def test_a_file_that_fits_no_mapping_is_refused_naming_the_keys_and_shapes(module, sizes, batchnorm, message,
                                                                          tmp_path):
    torch.save(module.state_dict(), tmp_path / "m.pt")
    assert refusals(tmp_path / "m.pt", sizes, batchnorm).startswith(f"{tmp_path / 'm.pt'}: {message}")


def test_layers_out_of_order_with_repeated_shapes_are_refused_as_ambiguous(tmp_path):
    """The only ambiguity matching in file order leaves: when the file's order is not the
    network's (the output layer assigned first), shapes decide, unless two layers share one."""
    torch.save(OutputFirstNet([784, 32, 32, 32, 10]).state_dict(), tmp_path / "m.pt")
    assert refusals(tmp_path / "m.pt", [784, 32, 32, 32, 10]) == (
        f"{tmp_path / 'm.pt'}: the file does not list its Linear layers in the order of the network built from the "
        "flags (out.weight (10, 32) comes where W1 (32, 784) belongs), and their shapes fit more than one order: "
        "hidden.1.weight and hidden.2.weight are both (32, 32), each could be W2 or W3; save the state_dict of a "
        "module that assigns its layers in the order they run (an nn.Sequential does)")


def test_repeated_shapes_in_the_networks_order_load_in_file_order(tmp_path):
    """Equal widths are no ambiguity while the file lists the layers in the order they fit."""
    module = ListNet([784, 32, 32, 32, 10])
    torch.save(module.state_dict(), tmp_path / "m.pt")
    model = scratch_network([784, 32, 32, 32, 10])
    scratch_ckpt.load(tmp_path / "m.pt", model)
    for k in range(4):
        assert np.array_equal(model.params[f"W{k + 1}"], module.layers[k].weight.detach().numpy())


def test_match_layers_works_on_names_and_shapes_alone():
    expected = [("W1", (3, 4)), ("b1", (3,)), ("W2", (2, 3)), ("b2", (2,))]
    names, by_shape = match_layers({"a.weight": (3, 4), "a.bias": (3,), "b.weight": (2, 3), "b.bias": (2,)}, expected)
    assert names == {"a.weight": "W1", "a.bias": "b1", "b.weight": "W2", "b.bias": "b2"} and not by_shape
    names, by_shape = match_layers({"b.weight": (2, 3), "b.bias": (2,), "a.weight": (3, 4), "a.bias": (3,)}, expected)
    assert list(names) == ["a.weight", "a.bias", "b.weight", "b.bias"] and by_shape
    with pytest.raises(ValueError, match=r"a\.bias \(2,\): neither a Linear"):
        match_layers({"a.weight": (3, 4), "a.bias": (2,)}, expected)  # a bias that is not one per row


# ----------------------------------------------------------------------------- a whole pickled module


def test_a_whole_pickled_module_gets_the_state_dict_advice_on_both_twins(tmp_path):
    torch.save(FcNet([784, 64, 32, 10]), tmp_path / "whole.pt")
    assert refusals(tmp_path / "whole.pt", [784, 64, 32, 10]) == (
        f"{tmp_path / 'whole.pt'} holds a whole pickled module ({FcNet.__module__}.FcNet), which cannot be "
        "loaded safely: save model.state_dict() instead (torch.save(model.state_dict(), path))")
    torch.save(flatten_sequential([784, 48, 10]), tmp_path / "sequential.pt")
    assert "holds a whole pickled module (torch.nn.modules.container.Sequential)" in refusals(
        tmp_path / "sequential.pt", [784, 48, 10])


def test_both_programs_refuse_a_whole_pickled_module_in_one_line_with_exit_2(tmp_path):
    """The programs never import the reader's class: its name is read off the pickle."""
    path = tmp_path / "whole.pt"
    torch.save(FcNet([784, 128, 64, 10]), path)
    for twin in ("scratch", "torchimpl"):
        result = run(twin, "--load", path, "--epochs", 0)
        assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""
        assert result.stderr.splitlines() == [
            f"python -m {twin}.train: error: {path} holds a whole pickled module ({FcNet.__module__}.FcNet), which "
            "cannot be loaded safely: save model.state_dict() instead (torch.save(model.state_dict(), path))"]
        assert "weights_only" not in result.stderr


def test_scratch_matches_a_readers_file_and_names_a_pickled_class_without_importing_torch(tmp_path):
    torch.save(FcNet([6, 5, 4, 3]).state_dict(), tmp_path / "m.pt")
    torch.save(FcNet([6, 5, 4, 3]), tmp_path / "whole.pt")
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np\n"
            "from scratch.extras import checkpoint\n"
            "from scratch.toolbox.model import Network, init_params\n"
            "checkpoint.load(sys.argv[1], Network(init_params([6, 5, 4, 3], np.random.default_rng(0))))\n"
            "try:\n"
            "    checkpoint.read(sys.argv[2])\n"
            "except ValueError as err:\n"
            "    print(err)\n"
            "assert sys.modules['torch'] is None and not any(m.startswith('test') for m in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pt"), str(tmp_path / "whole.pt")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(f"loaded {tmp_path / 'm.pt'}: fc1.weight -> W1")
    assert f"holds a whole pickled module ({FcNet.__module__}.FcNet)" in result.stdout
