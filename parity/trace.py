"""A reader's own PyTorch MLP, read from its computation and mapped onto the hand-written network.

Readers write the MLP their own way: attributes fc1, fc2, fc3 with F.relu in forward, an
nn.Sequential opening with nn.Flatten, a ModuleList in a loop. trace() runs torch.fx symbolic
tracing and walks the graph from the input to the output; the attribute names play no part.
What it accepts is exactly what scratch/toolbox/model.py computes: an optional flatten, then per
hidden layer Linear, [BatchNorm1d], activation, [Dropout]; the last Linear alone, followed by
nothing, a sigmoid, softmax or log_softmax. Anything else is refused with a TraceError naming
the graph node and the reason. Leaky ReLU's slope must be 0.01: Arch carries no slope, so a
different one is refused rather than silently changed. Run it:
    python -m parity.trace path/to/model.py:Net [--module-args '{"hidden": 128}']
"""

import importlib
import importlib.util
import json
import operator
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import fx, nn

from common import layout
from common.cli import Parser
from common.errors import InputError, first_line, run_cli


class TraceError(InputError):
    """The module is not one the hand-written network can be: the message names the node."""


@dataclass
class Structure:
    layer_sizes: list
    activation: str = "relu"
    negative_slope: float = 0.01
    batchnorm: bool = False
    dropout: float = 0.0
    output: str = "logits"
    flatten: bool = False
    parameters: dict = field(default_factory=dict)  # state_dict key -> scratch name, scratch order
    buffers: dict = field(default_factory=dict)
    dropout_modules: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def mapping_lines(self):
        return [f"{key} -> {name}" for key, name in (*self.parameters.items(), *self.buffers.items())]


# ----------------------------------------------------------------------------- what a node is

ACTIVATION_MODULES = {getattr(nn, module): name for name, module in layout.ACTIVATION_MODULES.items()}
ACTIVATION_FUNCTIONS = {torch.relu: "relu", torch.relu_: "relu", F.relu: "relu", F.relu_: "relu",
                        torch.tanh: "tanh", F.tanh: "tanh", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid",
                        F.leaky_relu: "leaky_relu", F.leaky_relu_: "leaky_relu"}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh",
                      "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}
SOFTMAX_FUNCTIONS = {F.softmax: "softmax", torch.softmax: "softmax",
                     F.log_softmax: "log_softmax", torch.log_softmax: "log_softmax"}
DROPOUT_FUNCTIONS = (F.dropout, torch.dropout, torch.dropout_)
SHAPE_ARITHMETIC = (operator.getitem, operator.mul, operator.floordiv, operator.add, operator.sub)
KNOWN = ("Linear, BatchNorm1d, ReLU, Tanh, Sigmoid, LeakyReLU (modules or functions), nn.Dropout, "
         "a flatten at the input and softmax or log_softmax at the output")
BATCHNORM_EPS, BATCHNORM_MOMENTUM, LEAKY_SLOPE = 1e-5, 0.1, 0.01  # what scratch's network uses


def _target(node):
    if isinstance(node.target, str):
        return node.target
    module = getattr(node.target, "__module__", None) or ""
    module = {"_operator": "operator", "torch._C._nn": "torch.nn.functional"}.get(module, module)
    return f"{module}.{node.target.__name__}" if module and module != "builtins" else node.target.__name__


def _describe(node, root=None):
    if node.op == "call_module" and root is not None:
        return f"node {node.name!r} (call_module {node.target}: {type(root.get_submodule(node.target)).__name__})"
    return f"node {node.name!r} ({node.op} {_target(node)})"


def _arg(node, index, name, default=None):
    """Argument `index` of the call (for call_method the tensor itself is index 0), or by keyword."""
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _shape_nodes(graph):
    """Nodes that compute sizes, not tensors: x.size(0), x.shape[0], x.dim() and arithmetic on them."""
    shape = set()
    for n in graph.nodes:
        if (n.op == "call_method" and n.target in ("size", "dim")) or (
                n.op == "call_function" and n.target is getattr and n.args[1] in ("shape", "ndim")) or (
                n.op == "call_function" and n.target in SHAPE_ARITHMETIC and n.all_input_nodes
                and all(i in shape for i in n.all_input_nodes)):
            shape.add(n)
    return shape


def _flatten_shape(node, shape_nodes):
    """For view/reshape: the (batch, features) it asks for, or a TraceError if it is not a flatten."""
    dims = tuple(node.args[1:]) if node.op == "call_method" else tuple(node.args[1:2]) or (node.kwargs.get("shape"),)
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    batch_ok = lambda d: d in shape_nodes or isinstance(d, int)  # noqa: E731
    if len(dims) != 2 or not batch_ok(dims[0]) or not isinstance(dims[1], int):
        raise TraceError(f"{_describe(node)} reshapes to {dims}: the hand-written network only flattens "
                         f"the input to (N, features), as x.view(x.size(0), -1) does")
    return dims


def _classify(node, root, shape_nodes):
    """(kind, detail) for one node on the chain; a TraceError for anything scratch's network lacks."""
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        if isinstance(m, nn.Linear):
            return "linear", m
        if isinstance(m, nn.BatchNorm1d):
            return "batchnorm", m
        if type(m) in ACTIVATION_MODULES:
            return "activation", (ACTIVATION_MODULES[type(m)], getattr(m, "negative_slope", LEAKY_SLOPE))
        if type(m) is nn.Dropout:
            return "dropout", m.p
        if isinstance(m, nn.Flatten):
            return "flatten", ("flatten", m.start_dim, m.end_dim)
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            return "softmax" if isinstance(m, nn.Softmax) else "log_softmax", m.dim
        if isinstance(m, nn.Identity):
            return "identity", None
        raise TraceError(f"{_describe(node, root)} is not part of the hand-written network, which knows {KNOWN}")
    if node.op == "call_function" and node.target in ACTIVATION_FUNCTIONS:
        name = ACTIVATION_FUNCTIONS[node.target]
        slope = _arg(node, 1, "negative_slope", LEAKY_SLOPE) if name == "leaky_relu" else LEAKY_SLOPE
        return "activation", (name, slope)
    if node.op == "call_method" and node.target in ACTIVATION_METHODS:
        return "activation", (ACTIVATION_METHODS[node.target], LEAKY_SLOPE)
    if node.op == "call_function" and node.target in SOFTMAX_FUNCTIONS:
        return SOFTMAX_FUNCTIONS[node.target], _arg(node, 1, "dim")
    if node.op == "call_method" and node.target in ("softmax", "log_softmax"):
        return node.target, _arg(node, 1, "dim")
    if node.op == "call_function" and node.target in DROPOUT_FUNCTIONS:
        raise TraceError(f"{_describe(node)} draws its dropout mask inside forward, where parity cannot hand "
                         f"it the mask the hand-written network uses: use an nn.Dropout module "
                         f"(self.drop = nn.Dropout(p) in __init__, self.drop(x) in forward)")
    if (node.op, node.target) in (("call_method", "flatten"), ("call_function", torch.flatten)):
        return "flatten", ("flatten", _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))
    if (node.op == "call_method" and node.target in ("view", "reshape")) or (
            node.op == "call_function" and node.target is torch.reshape):
        return "flatten", ("reshape", *_flatten_shape(node, shape_nodes))
    raise TraceError(f"{_describe(node)} is not part of the hand-written network, which knows {KNOWN}")


# ----------------------------------------------------------------------------- the chain


def _graph(module):
    """(root, qualify, graph): qualify turns a call_module target into the module's own state_dict
    prefix. torchimpl's MLP checks its input's shape in forward, which symbolic tracing cannot
    follow, so its .net is traced; a bare torch module (nn.Linear) is a leaf, so it is wrapped."""
    from torchimpl.toolbox.model import MLP
    if isinstance(module, MLP):
        root, qualify = module.net, lambda target: f"net.{target}"
    elif fx.Tracer().is_leaf_module(module, ""):
        root, qualify = nn.Sequential(module), lambda target: ""
    else:
        root, qualify = module, lambda target: target
    try:
        return root, qualify, fx.symbolic_trace(root).graph
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... from user code
        raise TraceError(f"{type(module).__name__} cannot be traced symbolically with torch.fx "
                         f"({type(err).__name__}: {first_line(err)}); data-dependent control flow such as "
                         f"`if x.sum() > 0` has no place in a fixed chain of layers") from None


def _chain(graph):
    """The nodes from the single input to the output, in order; a TraceError where the graph branches."""
    nodes = list(graph.nodes)
    shape_nodes = _shape_nodes(graph)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise TraceError(f"forward takes {len(inputs)} inputs ({', '.join(n.name for n in inputs)}): "
                         f"the hand-written network takes one")
    node, chain, on_path = inputs[0], [], set(inputs)
    while True:
        users = [u for u in node.users if u not in shape_nodes]
        if len(users) > 1 and any(u.op == "output" for u in users):
            raise TraceError(f"forward returns {_describe(node)} besides its result: the hand-written "
                             f"network returns one tensor, the last layer's output")
        if len(users) != 1:
            raise TraceError(f"{_describe(node)} feeds {len(users)} nodes ({', '.join(u.name for u in users)}): "
                             f"a skip connection or another branch; the hand-written network is a single "
                             f"chain, each layer feeding only the next")
        nxt = users[0]
        if nxt.op == "output":
            if nxt.args[0] is not node:
                raise TraceError(f"node 'output' returns {nxt.args[0]!r}: the hand-written network returns "
                                 f"one tensor, the last layer's output")
            break
        others = [i for i in nxt.all_input_nodes if i is not node and i not in shape_nodes]
        if others:
            raise TraceError(f"{_describe(nxt)} combines node {node.name!r} with "
                             f"{', '.join(_describe(i) for i in others)}: an add or cat of two paths, or a "
                             f"tensor of its own; each layer of the hand-written network takes only the "
                             f"previous layer's output")
        chain.append(nxt)
        on_path.add(nxt)
        node = nxt
    for n in nodes:
        if n not in on_path and n not in shape_nodes and n.op.startswith("call_"):
            raise TraceError(f"{_describe(n)} is not on the path from the input to the output")
    return chain, shape_nodes


def _layers(chain, root, shape_nodes):
    """Group the chain into layers: dicts with the Linear node and its bn/act/dropout nodes."""
    elements = [(n, *_classify(n, root, shape_nodes)) for n in chain]
    elements = [e for e in elements if e[1] != "identity"]
    linears = [i for i, (_, kind, _) in enumerate(elements) if kind == "linear"]
    for a, b in zip(linears, linears[1:]):
        if not any(kind == "activation" for _, kind, _ in elements[a + 1:b]):
            first, second = (_describe(elements[i][0], root) for i in (a, b))
            raise TraceError(f"there is no nonlinearity between {first} and {second}: the two "
                             f"layers collapse into one linear map (W2 @ (W1 @ x) + c is just another W @ x + c), "
                             f"so the network is not the MLP the flags describe; put an activation such as "
                             f"F.relu between them")
    layers, flattens, output = [], [], None
    for node, kind, detail in elements:
        if output is not None:
            raise TraceError(f"{_describe(node, root)} follows the {output[0]} on the output (node "
                             f"{output[1].name!r}): nothing comes after it in the hand-written network")
        if kind == "flatten":
            if layers:
                raise TraceError(f"{_describe(node, root)} reshapes after the first Linear "
                                 f"(node {layers[0]['linear'].name!r}): only the input may be flattened")
            flattens.append((node, detail))
            continue
        if kind == "linear":
            layers.append({"linear": node, "module": detail, "bn": None, "act": None, "dropout": None})
            continue
        if not layers:
            raise TraceError(f"{_describe(node, root)} comes before the first Linear: the hand-written network "
                             f"starts with a Linear (only a flatten may come first)")
        layer = layers[-1]
        after = layer["dropout"] or layer["act"] or layer["bn"] or layer["linear"]
        if kind == "batchnorm" and (layer["act"] or layer["bn"]):
            raise TraceError(f"{_describe(node, root)} comes after {_describe(after, root)}: the hand-written "
                             f"network normalises once, before the activation (Linear, BatchNorm1d, activation)")
        if kind == "activation" and (layer["act"] or layer["dropout"]):
            what = "two activations in a row" if layer["act"] is after else "an activation after dropout"
            raise TraceError(f"{_describe(node, root)} comes after {_describe(after, root)}: {what}; the "
                             f"hand-written network has one activation per layer, then dropout")
        if kind == "dropout" and (layer["dropout"] or not layer["act"]):
            raise TraceError(f"{_describe(node, root)} comes after {_describe(after, root)}: the hand-written "
                             f"network drops out once, after the activation")
        if kind in ("softmax", "log_softmax"):
            if after is not layer["linear"]:
                raise TraceError(f"{_describe(node, root)} comes after {_describe(after, root)}: a {kind} on the "
                                 f"output must follow the last Linear directly")
            output = (kind, node, detail)
            continue
        layer[{"batchnorm": "bn", "activation": "act", "dropout": "dropout"}[kind]] = node
        layer[{"batchnorm": "batchnorm", "activation": "activation", "dropout": "dropout_p"}[kind]] = detail
    if not layers:
        raise TraceError("no nn.Linear between the input and the output: there is no network to map")
    return layers, flattens, output


# ----------------------------------------------------------------------------- checks against Arch


def _check(layers, root):
    for a, b in zip(layers, layers[1:]):
        if a["module"].out_features != b["module"].in_features:
            raise TraceError(f"node {a['linear'].name!r} gives {a['module'].out_features} features but node "
                             f"{b['linear'].name!r} takes {b['module'].in_features}")
    seen = {}
    for layer in layers:
        node, m = layer["linear"], layer["module"]
        if node.target in seen:
            raise TraceError(f"{_describe(node, root)} calls module {node.target} a second time (first at node "
                             f"{seen[node.target]!r}): shared weights; each scratch layer owns its own")
        seen[node.target] = node.name
        if m.bias is None:
            raise TraceError(f"{_describe(node, root)} has no bias (bias=False): every layer of the hand-written "
                             f"network adds one, and it has no bias fixed at zero")
        if layer["bn"] is not None:
            bn = layer["batchnorm"]
            if bn.num_features != m.out_features:
                raise TraceError(f"{_describe(layer['bn'], root)} normalises {bn.num_features} features but "
                                 f"node {node.name!r} gives {m.out_features}")
            if not (bn.affine and bn.track_running_stats and bn.eps == BATCHNORM_EPS
                    and bn.momentum == BATCHNORM_MOMENTUM):
                raise TraceError(f"{_describe(layer['bn'], root)} has affine={bn.affine}, track_running_stats="
                                 f"{bn.track_running_stats}, eps={bn.eps}, momentum={bn.momentum}: the hand-written "
                                 f"batch norm has affine=True, track_running_stats=True, eps=1e-05, momentum=0.1")
    hidden = layers[:-1]
    for layer in hidden:
        name, slope = layer["activation"]
        if name == "leaky_relu" and slope != LEAKY_SLOPE:
            raise TraceError(f"{_describe(layer['act'], root)} has negative_slope={slope}: the hand-written "
                             f"network's leaky ReLU uses {LEAKY_SLOPE} (Arch has no slope to set)")
    for first, other in zip(hidden, hidden[1:]):
        differs = [what for what, a, b in (
            ("activation", first["activation"][0], other["activation"][0]),
            ("batch norm", first["bn"] is None, other["bn"] is None),
            ("dropout", first["dropout"] and first["dropout_p"], other["dropout"] and other["dropout_p"]))
            if a != b]
        if differs:
            what = differs[0]
            key = {"activation": "act", "batch norm": "bn", "dropout": "dropout"}[what]
            a, b = (_layer_text(layer, key, root) for layer in (first, other))
            raise TraceError(f"{what} differs between hidden layers: {a}, but {b}; the hand-written network "
                             f"builds every hidden layer the same way")


def _layer_text(layer, key, root):
    if layer[key] is None:
        return f"node {layer['linear'].name!r} has no {'batch norm' if key == 'bn' else 'dropout'} after it"
    if key == "dropout":
        return f"{_describe(layer['dropout'], root)} drops p={layer['dropout_p']}"
    if key == "bn":
        return f"node {layer['linear'].name!r} has batch norm after it ({_describe(layer['bn'], root)})"
    return f"{_describe(layer['act'], root)} is {layer['activation'][0]}"


# ----------------------------------------------------------------------------- trace


def trace(module):
    """The Structure of `module`'s forward, or a TraceError naming the node scratch's network lacks."""
    if not isinstance(module, nn.Module):
        raise TraceError(f"expected an nn.Module, got {type(module).__name__}")
    root, qualify, graph = _graph(module)
    chain, shape_nodes = _chain(graph)
    layers, flattens, output = _layers(chain, root, shape_nodes)
    _check(layers, root)
    structure = _structure(layers, flattens, output, root, qualify)
    unused = [key for key in module.state_dict() if key not in structure.parameters and key not in structure.buffers]
    if unused:
        structure.notes.append(f"state_dict entries forward never uses: {', '.join(unused)}")
    return structure


def _key(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _structure(layers, flattens, output, root, qualify):
    notes, n_in = [], layers[0]["module"].in_features
    for node, (how, a, b) in flattens:
        if how == "flatten" and (a, b) != (1, -1):
            raise TraceError(f"{_describe(node, root)} flattens dims {a} to {b}: flatten from dim 1 to the end "
                             f"(torch.flatten(x, 1)), keeping the batch dimension")
        if how == "reshape" and b not in (-1, n_in):
            raise TraceError(f"{_describe(node, root)} reshapes to {b} features but the first Linear takes {n_in}")
        if how == "reshape" and isinstance(a, int) and a != -1:
            notes.append(f"{_describe(node, root)} fixes the batch size at {a}: a smaller last batch will fail; "
                         f"use x.view(x.size(0), -1)")
    if flattens:
        notes.append(f"the input is flattened first, by {_describe(flattens[0][0], root)}: give the hand-written "
                     f"network the same rows, shape (N, {n_in})")
    last = layers[-1]
    kind = "logits"
    if output is not None:
        kind, node, dim = output
        if dim not in (1, -1, None):
            raise TraceError(f"{_describe(node, root)} takes {kind} over dim {dim}: over the batch, not the classes; "
                             f"use dim=1")
        if kind == "softmax":
            notes.append(f"softmax after the last Linear, at {_describe(node, root)}: the network returns "
                         f"probabilities; "
                         f"nn.CrossEntropyLoss expects logits and applies log_softmax itself, so training with it "
                         f"differs from the hand-written network's")
        else:
            notes.append(f"log_softmax after the last Linear, at {_describe(node, root)}: the network returns "
                         f"log-probabilities, for nn.NLLLoss (together the same as nn.CrossEntropyLoss on logits); "
                         f"the hand-written network returns the logits")
    elif last["act"] is not None and last["activation"][0] == "sigmoid" and last["bn"] is None \
            and last["dropout"] is None:
        kind = "sigmoid"
        notes.append(f"sigmoid after the last Linear, at {_describe(last['act'], root)}: the network returns "
                     f"probabilities for nn.BCELoss, as the hand-written network does with Arch(sigmoid_output=True)")
    elif last["bn"] is not None or last["act"] is not None:
        node = last["bn"] or last["act"]
        raise TraceError(f"{_describe(node, root)} comes after the last Linear (node {last['linear'].name!r}): "
                         f"the hand-written network's last layer is a Linear alone, followed by nothing "
                         f"(logits), a sigmoid, softmax or log_softmax")
    hidden = layers[:-1]
    structure = Structure(
        layer_sizes=[n_in] + [layer["module"].out_features for layer in layers],
        activation=hidden[0]["activation"][0] if hidden else "relu",
        negative_slope=hidden[0]["activation"][1] if hidden else LEAKY_SLOPE,
        batchnorm=bool(hidden) and hidden[0]["bn"] is not None,
        dropout=float(hidden[0]["dropout_p"]) if hidden and hidden[0]["dropout"] is not None else 0.0,
        output=kind, flatten=bool(flattens), notes=notes)
    params, buffers = structure.parameters, structure.buffers
    for k, layer in enumerate(layers, 1):
        q = qualify(layer["linear"].target)
        params[_key(q, "weight")], params[_key(q, "bias")] = f"W{k}", f"b{k}"
        if layer["bn"] is not None:
            q = qualify(layer["bn"].target)
            params[_key(q, "weight")], params[_key(q, "bias")] = f"gamma{k}", f"beta{k}"
            for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                buffers[_key(q, buffer)] = f"{buffer}{k}"
        if layer["dropout"] is not None:
            structure.dropout_modules.append(qualify(layer["dropout"].target))
    if structure.dropout_modules:
        notes.append(f"dropout p={structure.dropout} after every hidden activation "
                     f"({', '.join(structure.dropout_modules)}): parity hands each nn.Dropout its mask")
    return structure


# ----------------------------------------------------------------------------- loading a reader's module


def _import(where):
    """The Python module a spec's left half names: a file path (…/x.py) or a dotted module name."""
    try:
        if where.endswith(".py") or "/" in where or "\\" in where:
            path = Path(where)
            if not path.is_file():
                raise InputError(f"no such file: {where}")
            name = f"_trace_{abs(hash(str(path.resolve())))}_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # dataclasses and pickling look the module up by name
            sys.path.insert(0, str(path.resolve().parent))  # its own imports of files beside it
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
            return module
        return importlib.import_module(where)
    except InputError:
        raise
    except ModuleNotFoundError as err:
        raise InputError(f"cannot import {where}: {err}") from None
    except Exception as err:
        raise InputError(f"importing {where} raised {type(err).__name__}: {err}") from None


def load_module(spec, module_args=None):
    """The nn.Module that spec "path/to/file.py:NAME" or "package.module:NAME" builds: NAME is a class
    (called with module_args as keyword arguments, or none), a function returning a module, or a module."""
    where, _, name = str(spec).rpartition(":")
    if not where or not name.isidentifier():
        raise InputError(f"module spec {spec!r} must be path/to/file.py:NAME or package.module:NAME")
    if module_args is not None and not isinstance(module_args, dict):
        raise InputError(f"module arguments must be a dict of keyword arguments, got {type(module_args).__name__}")
    source = _import(where)
    if not hasattr(source, name):
        found = sorted(k for k, v in vars(source).items() if not k.startswith("_") and (
            isinstance(v, nn.Module) or (isinstance(v, type) and issubclass(v, nn.Module) and
                                         v.__module__ == source.__name__)
            or (callable(v) and getattr(v, "__module__", None) == source.__name__ and not isinstance(v, type))))
        raise InputError(f"{where} has no {name!r}; it defines {', '.join(found) or 'no modules or functions'}")
    thing = getattr(source, name)
    if isinstance(thing, nn.Module):
        if module_args:
            raise InputError(f"{name} in {where} is already a built module: it takes no arguments")
        return thing
    if isinstance(thing, type) and not issubclass(thing, nn.Module):
        raise InputError(f"{name} in {where} is a class but not an nn.Module")
    if not callable(thing):
        raise InputError(f"{name} in {where} is a {type(thing).__name__}, not an nn.Module class or a function")
    args = ", ".join(f"{k}={v!r}" for k, v in (module_args or {}).items())
    try:
        built = thing(**(module_args or {}))
    except Exception as err:
        raise InputError(f"building {name}({args}) from {where} raised {type(err).__name__}: {err}") from None
    if not isinstance(built, nn.Module):
        raise InputError(f"{name}({args}) from {where} returned a {type(built).__name__}, not an nn.Module")
    return built


# ----------------------------------------------------------------------------- main


def main(argv=None):
    parser = Parser(prog="python -m parity.trace", description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="path/to/file.py:NAME or package.module:NAME (a class or a function)")
    parser.add_argument("--module-args", default=None, metavar="JSON",
                        help='keyword arguments for NAME, as a JSON object: \'{"hidden": 128}\'')
    args = parser.parse_args(argv)
    try:
        module_args = None if args.module_args is None else json.loads(args.module_args)
    except json.JSONDecodeError as err:
        raise InputError(f"--module-args is not JSON: {err}") from None
    s = trace(load_module(args.spec, module_args))
    print(f"layers {'-'.join(map(str, s.layer_sizes))}  activation {s.activation}  batchnorm {s.batchnorm}  "
          f"dropout {s.dropout}  output {s.output}  flatten {s.flatten}")
    for line in s.mapping_lines() + [f"note: {note}" for note in s.notes]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m parity.trace"))
