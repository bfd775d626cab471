"""parity/trace.py: a reader's own MLP, in the styles readers write, traced and mapped onto scratch's.

Each module style is written out here as a reader would. The mapping is checked twice: by the
names it gives, and by running the hand-written network on the weights it names (float64,
the same outputs to 1e-12). The refusals each name the graph node at fault.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InputError
from common.layout import torch_names
from parity.trace import Structure, TraceError, load_module, main, trace
from scratch.toolbox import model as scratch_model
from torchimpl.toolbox.model import MLP

# ----------------------------------------------------------------------------- the readers' styles


class AttributeNet(nn.Module):  # fc1, fc2, fc3 with F.relu in forward
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class ModuleListNet(nn.Module):  # a ModuleList in a loop, ReLU between the layers
    def __init__(self, sizes=(20, 16, 12, 5)):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


class MethodReluNet(nn.Module):  # torch.relu, then Tensor.relu(), then in-place F.relu
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(6, 5), nn.Linear(5, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = self.b(x).relu()
        x = F.relu(self.c(x), inplace=True)
        return self.d(x)


class TwoLayer(nn.Module):  # one hidden layer, its activation handed in (a module or a function)
    def __init__(self, act, n_in=6, hidden=5, n_out=3, head=None):
        super().__init__()
        self.hidden, self.act, self.out = nn.Linear(n_in, hidden), act, nn.Linear(hidden, n_out)
        self.head = head

    def forward(self, x):
        x = self.out(self.act(self.hidden(x)))
        return x if self.head is None else self.head(x)


class AttributeBatchNormDropoutNet(nn.Module):  # batch norm and dropout as attributes
    def __init__(self):
        super().__init__()
        self.fc1, self.bn1, self.drop1 = nn.Linear(8, 6), nn.BatchNorm1d(6), nn.Dropout(0.3)
        self.fc2, self.bn2, self.drop2 = nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Dropout(0.3)
        self.fc3 = nn.Linear(5, 3)

    def forward(self, x):
        x = self.drop1(F.relu(self.bn1(self.fc1(x))))
        x = self.drop2(F.relu(self.bn2(self.fc2(x))))
        return self.fc3(x)


def sequential_batchnorm_dropout():  # the same wiring, nn.Sequential style with a Flatten in front
    return nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.25),
                         nn.Linear(6, 3))


class FlattenNet(nn.Module):  # the input flattened in forward, one of the usual spellings
    def __init__(self, flatten):
        super().__init__()
        self.flatten_input, self.fc1, self.fc2 = flatten, nn.Linear(12, 7), nn.Linear(7, 2)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(self.flatten_input(x))))


def scratch_output(structure, module, x):
    """The hand-written network's output on the weights `structure` names, in evaluation mode."""
    state = module.state_dict()
    params = {name: state[key].detach().numpy() for key, name in structure.parameters.items()}
    buffers = {name: (int(state[key]) if name.startswith("num_batches") else state[key].numpy().copy())
               for key, name in structure.buffers.items()}
    arch = scratch_model.Arch(activation=structure.activation, batchnorm=structure.batchnorm,
                              dropout=structure.dropout, sigmoid_output=structure.output == "sigmoid")
    X = x.reshape(len(x), -1).numpy() if structure.flatten else x.numpy()
    out, _ = scratch_model.forward(params, X, arch, buffers, train=False)
    if structure.output in ("softmax", "log_softmax"):
        log_p = out - out.max(axis=1, keepdims=True)
        log_p = log_p - np.log(np.exp(log_p).sum(axis=1, keepdims=True))
        out = np.exp(log_p) if structure.output == "softmax" else log_p
    return out


def assert_scratch_matches(module, x):
    """trace(module), then scratch's forward on the mapped weights agrees with module(x) to 1e-12."""
    torch.manual_seed(0)
    module = module.double()
    if any(isinstance(m, nn.BatchNorm1d) for m in module.modules()):
        module.train()
        module(torch.randn(x.shape, dtype=torch.float64) * 2 + 0.5)  # running statistics away from 0 and 1
    module.eval()
    structure = trace(module)
    with torch.no_grad():
        expected = module(x).numpy()
    got = scratch_output(structure, module, x)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= 1e-12 * max(1.0, np.max(np.abs(expected)))
    return structure


def double(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# ----------------------------------------------------------------------------- what trace finds


def test_attribute_style_with_functional_relu_maps_fc_names_to_scratch_names():
    s = trace(AttributeNet())
    assert isinstance(s, Structure)
    assert s.layer_sizes == [784, 128, 64, 10]
    assert (s.activation, s.batchnorm, s.dropout, s.output, s.flatten) == ("relu", False, 0.0, "logits", False)
    assert s.parameters == {"fc1.weight": "W1", "fc1.bias": "b1", "fc2.weight": "W2", "fc2.bias": "b2",
                            "fc3.weight": "W3", "fc3.bias": "b3"}
    assert s.buffers == {} and s.dropout_modules == [] and s.notes == []
    assert s.mapping_lines()[:2] == ["fc1.weight -> W1", "fc1.bias -> b1"]
    assert_scratch_matches(AttributeNet(), double(4, 784))


def test_sequential_with_flatten_takes_images_and_matches_scratch_on_flattened_rows():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    s = assert_scratch_matches(net, double(3, 1, 28, 28))
    assert s.flatten and s.layer_sizes == [784, 32, 10]
    assert s.parameters == {"1.weight": "W1", "1.bias": "b1", "3.weight": "W2", "3.bias": "b2"}
    assert any("flattened" in note for note in s.notes)


def test_module_list_in_a_loop_is_unrolled_into_its_layers():
    s = assert_scratch_matches(ModuleListNet(), double(5, 20))
    assert s.layer_sizes == [20, 16, 12, 5]
    assert list(s.parameters) == [f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")]


def test_torch_relu_tensor_relu_and_inplace_relu_are_all_relu():
    s = assert_scratch_matches(MethodReluNet(), double(4, 6))
    assert s.activation == "relu" and s.layer_sizes == [6, 5, 4, 4, 3]


@pytest.mark.parametrize("act, name", [
    (nn.Tanh(), "tanh"), (torch.tanh, "tanh"), (F.tanh, "tanh"), (lambda x: x.tanh(), "tanh"),
    (nn.Sigmoid(), "sigmoid"), (torch.sigmoid, "sigmoid"), (F.sigmoid, "sigmoid"), (lambda x: x.sigmoid(), "sigmoid"),
    (nn.LeakyReLU(), "leaky_relu"), (F.leaky_relu, "leaky_relu"), (lambda x: F.leaky_relu(x, 0.01), "leaky_relu"),
    (nn.ReLU(inplace=True), "relu"), (lambda x: F.relu(x), "relu"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_every_spelling_of_an_activation_is_recognised(act, name):
    s = assert_scratch_matches(TwoLayer(act), double(4, 6))
    assert s.activation == name and s.negative_slope == 0.01 and s.output == "logits"


def test_a_network_without_hidden_layers_reports_relu_and_one_linear():
    s = trace(nn.Sequential(nn.Linear(5, 2)))
    assert s.layer_sizes == [5, 2] and s.activation == "relu" and s.parameters == {"0.weight": "W1", "0.bias": "b1"}
    bare = assert_scratch_matches(nn.Linear(5, 2), double(3, 5))  # a leaf module on its own
    assert bare.parameters == {"weight": "W1", "bias": "b1"}


def test_attribute_batchnorm_and_dropout_map_gamma_beta_and_running_statistics():
    net = AttributeBatchNormDropoutNet()
    s = assert_scratch_matches(net, double(6, 8))
    assert s.batchnorm and s.dropout == 0.3
    assert s.parameters == {"fc1.weight": "W1", "fc1.bias": "b1", "bn1.weight": "gamma1", "bn1.bias": "beta1",
                            "fc2.weight": "W2", "fc2.bias": "b2", "bn2.weight": "gamma2", "bn2.bias": "beta2",
                            "fc3.weight": "W3", "fc3.bias": "b3"}
    assert s.buffers == {"bn1.running_mean": "running_mean1", "bn1.running_var": "running_var1",
                         "bn1.num_batches_tracked": "num_batches_tracked1", "bn2.running_mean": "running_mean2",
                         "bn2.running_var": "running_var2", "bn2.num_batches_tracked": "num_batches_tracked2"}
    assert s.dropout_modules == ["drop1", "drop2"]
    assert list(s.parameters.values()) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2", "W3", "b3"]
    assert set(s.parameters) | set(s.buffers) == set(net.state_dict())


def test_sequential_batchnorm_and_dropout_map_by_index():
    s = assert_scratch_matches(sequential_batchnorm_dropout(), double(6, 2, 4))
    assert (s.activation, s.batchnorm, s.dropout, s.flatten) == ("tanh", True, 0.25, True)
    assert s.parameters == {"1.weight": "W1", "1.bias": "b1", "2.weight": "gamma1", "2.bias": "beta1",
                            "5.weight": "W2", "5.bias": "b2"}
    assert s.buffers == {"2.running_mean": "running_mean1", "2.running_var": "running_var1",
                         "2.num_batches_tracked": "num_batches_tracked1"}
    assert s.dropout_modules == ["4"]


def test_dropout_modules_are_listed_in_the_order_forward_calls_them():
    class Reversed(nn.Module):  # registered in one order, called in the other
        def __init__(self):
            super().__init__()
            self.late, self.early = nn.Dropout(0.5), nn.Dropout(0.5)
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc3(self.late(torch.relu(self.fc2(self.early(torch.relu(self.fc1(x)))))))

    net, calls = Reversed(), []
    s = trace(net)
    for name in s.dropout_modules:
        net.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    net(torch.randn(3, 4))
    assert s.dropout_modules == calls == ["early", "late"]


def test_the_torch_twin_maps_onto_the_names_common_layout_gives():
    for options in ({}, {"batchnorm": True, "dropout": 0.2, "activation": "leaky_relu", "sigmoid_output": True}):
        s = trace(MLP([12, 8, 6, 3], **options))
        names = torch_names(3, options.get("batchnorm", False), bool(options.get("dropout")))
        assert {**s.parameters, **s.buffers} == {key: name for name, key in names.items()}
        assert s.output == ("sigmoid" if options else "logits")


def test_a_final_softmax_is_a_note_about_cross_entropy_not_an_error():
    for head in (nn.Softmax(dim=1), lambda z: F.softmax(z, dim=-1), lambda z: torch.softmax(z, 1),
                 lambda z: z.softmax(dim=1)):
        s = assert_scratch_matches(TwoLayer(nn.ReLU(), head=head), double(4, 6))
        assert s.output == "softmax"
        note = next(n for n in s.notes if n.startswith("softmax"))
        assert "probabilities" in note and "CrossEntropyLoss expects logits" in note


def test_a_final_log_softmax_is_reported_as_log_softmax():
    s = assert_scratch_matches(TwoLayer(nn.ReLU(), head=nn.LogSoftmax(dim=1)), double(4, 6))
    assert s.output == "log_softmax" and any("NLLLoss" in n for n in s.notes)


def test_a_final_sigmoid_is_the_sigmoid_output():
    for head in (nn.Sigmoid(), torch.sigmoid, lambda z: z.sigmoid()):
        s = assert_scratch_matches(TwoLayer(nn.Tanh(), n_out=1, head=head), double(4, 6))
        assert s.output == "sigmoid" and s.activation == "tanh"


@pytest.mark.parametrize("flatten", [
    nn.Flatten(), lambda x: x.view(x.size(0), -1), lambda x: x.reshape(x.shape[0], -1),
    lambda x: torch.flatten(x, 1), lambda x: x.flatten(1), lambda x: x.view(-1, 12),
], ids=["nn.Flatten", "view", "reshape", "torch.flatten", "Tensor.flatten", "view-1"])
def test_every_spelling_of_flattening_the_input_is_recognised(flatten):
    s = assert_scratch_matches(FlattenNet(flatten), double(3, 3, 4))
    assert s.flatten and s.layer_sizes == [12, 7, 2]


# ----------------------------------------------------------------------------- what trace refuses


def refusal(module):
    with pytest.raises(TraceError) as info:
        trace(module)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, InputError)
    return message


def test_a_convolution_is_refused_naming_its_node():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    message = refusal(net)
    assert "node '_0'" in message and "Conv2d" in message


def test_a_skip_connection_is_refused_naming_the_node_that_branches():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            x = F.relu(self.fc1(x))
            x = x + self.fc2(x)
            return self.fc3(x)

    message = refusal(Skip())
    assert "node 'relu'" in message and "skip connection" in message and "fc2" in message and "add" in message


def test_a_linear_without_bias_is_refused():
    message = refusal(nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2)))
    assert "node '_0'" in message and "no bias" in message


def test_a_missing_relu_tells_the_learner_the_layers_collapse_into_one_linear_map():
    class NoReLU(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(784, 128), nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(self.fc1(x))

    message = refusal(NoReLU())
    assert "there is no nonlinearity between node 'fc1'" in message and "node 'fc2'" in message
    assert "collapse into one linear map" in message and "not the MLP" in message
    # a dropout in between is no nonlinearity either
    message = refusal(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 2)))
    assert "no nonlinearity between node '_0'" in message and "node '_2'" in message


def test_mixed_activations_are_refused_naming_both_nodes():
    class Mixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x)))))

    message = refusal(Mixed())
    assert "activation differs" in message and "node 'relu'" in message and "node 'tanh'" in message


def test_batchnorm_after_the_activation_is_refused():
    message = refusal(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2)))
    assert "node '_2'" in message and "BatchNorm1d" in message and "before the activation" in message


def test_functional_dropout_is_refused_suggesting_nn_dropout():
    message = refusal(TwoLayer(lambda x: F.dropout(F.relu(x), 0.5)))
    assert "node 'dropout'" in message and "nn.Dropout" in message and "mask" in message


def test_data_dependent_control_flow_is_refused_as_untraceable():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 3), nn.Linear(3, 2)

        def forward(self, x):
            if x.sum() > 0:
                x = F.relu(self.fc1(x))
            return self.fc2(x)

    message = refusal(Branchy())
    assert "Branchy cannot be traced symbolically" in message
    assert "symbolically traced variables cannot be used as inputs to control flow" in message


def test_an_unknown_operation_is_refused_naming_its_node():
    message = refusal(TwoLayer(torch.exp))
    assert "node 'exp'" in message and "torch.exp" in message


@pytest.mark.parametrize("module, words", [
    (TwoLayer(nn.LeakyReLU(0.2)), ["negative_slope=0.2"]),
    (TwoLayer(lambda x: torch.relu(torch.relu(x))), ["node 'relu_1'", "two activations in a row"]),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.2),
                   nn.Linear(4, 2)), ["dropout differs", "p=0.1", "p=0.2"]),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.ReLU()), ["node '_3'", "after the last Linear"]),
    (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)), ["node '_2'", "only the input"]),
    (TwoLayer(nn.ReLU(), head=lambda z: F.softmax(z, dim=0)), ["node 'softmax'", "dim 0"]),
    (nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, momentum=0.01), nn.ReLU(), nn.Linear(3, 2)),
     ["node '_1'", "momentum=0.01"]),
], ids=["leaky-slope", "two-activations", "dropout-p", "relu-on-output", "late-flatten", "softmax-dim0",
        "bn-momentum"])
def test_other_departures_from_the_hand_written_network_are_refused_naming_the_node(module, words):
    message = refusal(module)
    assert all(word in message for word in words), message


def test_returning_a_hidden_activation_beside_the_output_is_refused():
    class Both(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = torch.relu(self.fc1(x))
            return self.fc2(h), h

    message = refusal(Both())
    assert "node 'relu'" in message and "returns one tensor" in message


def test_a_module_called_twice_is_refused_as_shared_weights():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(torch.relu(self.fc(x)))

    assert "a second time" in refusal(Shared())


# ----------------------------------------------------------------------------- load_module

READER_FILE = '''
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(10, hidden), nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def build(hidden=8):
    return nn.Sequential(nn.Linear(10, hidden), nn.Tanh(), nn.Linear(hidden, 3))


def not_a_module():
    return 42


def broken():
    raise RuntimeError("the reader's bug")


class Plain:
    pass


model = Net(4)
'''


@pytest.fixture
def reader_file(tmp_path):
    path = tmp_path / "reader_net.py"
    path.write_text(READER_FILE)
    return path


def test_load_module_from_a_file_path_builds_the_class(reader_file):
    net = load_module(f"{reader_file}:Net")
    assert isinstance(net, nn.Module) and trace(net).layer_sizes == [10, 16, 3]


def test_load_module_from_a_package_module_name(tmp_path, monkeypatch):
    package = tmp_path / "readerpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(READER_FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert trace(load_module("readerpkg.nets:Net")).parameters["fc1.weight"] == "W1"


def test_load_module_calls_a_factory_and_passes_module_args(reader_file):
    assert trace(load_module(f"{reader_file}:build")).layer_sizes == [10, 8, 3]
    assert trace(load_module(f"{reader_file}:build", {"hidden": 5})).activation == "tanh"
    assert trace(load_module(f"{reader_file}:Net", {"hidden": 7})).layer_sizes == [10, 7, 3]
    assert trace(load_module(f"{reader_file}:model")).layer_sizes == [10, 4, 3]


@pytest.mark.parametrize("name, args, words", [
    ("Missing", None, ["no 'Missing'", "Net", "build"]),
    ("not_a_module", None, ["returned a int", "not an nn.Module"]),
    ("broken", None, ["building broken()", "RuntimeError", "the reader's bug"]),
    ("Net", {"width": 3}, ["building Net(width=3)", "TypeError"]),
    ("Plain", None, ["class but not an nn.Module"]),
    ("model", {"hidden": 3}, ["already a built module"]),
])
def test_load_module_errors_say_what_is_wrong(reader_file, name, args, words):
    with pytest.raises(InputError) as info:
        load_module(f"{reader_file}:{name}", args)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_load_module_errors_for_a_missing_file_module_or_bad_spec(tmp_path):
    for spec, words in ((f"{tmp_path}/nowhere.py:Net", "no such file"),
                        ("no_such_package_xyz.nets:Net", "cannot import"),
                        ("just_a_name", "must be path/to/file.py:NAME")):
        with pytest.raises(InputError, match=words):
            load_module(spec)
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('at import')\n")
    with pytest.raises(InputError, match="importing .*bad.py raised ValueError: at import"):
        load_module(f"{bad}:Net")


def test_the_program_prints_the_structure_and_the_mapping(reader_file, capsys):
    assert main([f"{reader_file}:Net", "--module-args", '{"hidden": 6}']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("layers 10-6-3  activation relu") and "fc1.weight -> W1" in out


def test_a_bad_command_line_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--module-args"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("python -m parity.trace: error:"), err
