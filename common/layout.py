"""The names both twins share: activations and optimizers as torch spells them, and where each
scratch array lives in the torch twin's state_dict. Names only, no tensors.

torchimpl's MLP.net is an nn.Sequential holding, for every hidden layer, Linear, [BatchNorm1d],
the activation, [Dropout]; then the last Linear and [Sigmoid]. Modules without tensors still
take an index, so the keys depend on the options:

    784-128-10, plain:              W1 -> net.0.weight   W2 -> net.2.weight
    784-128-10, batchnorm, dropout: W1 -> net.0.weight   gamma1 -> net.1.weight   W2 -> net.4.weight

Any other Linear-only MLP's state_dict (fc1, fc2, fc3; an nn.Sequential behind nn.Flatten; a
ModuleList) is matched to scratch's names by the order and shapes of its layers: match_layers.
"""

from typing import NamedTuple

# --activation NAME -> the torch.nn module class the torch twin builds (scratch: its own function pair)
ACTIVATION_MODULES = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid", "leaky_relu": "LeakyReLU"}
# --optimizer NAME -> the torch.optim class (scratch.toolbox.optim has a class of the same name)
OPTIMIZER_CLASSES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}


def torch_names(n_linear, batchnorm=False, dropout=False):
    """{scratch name: state_dict key} for the parameters and batch norm's buffers, in order."""
    names, index = {}, 0
    for k in range(1, n_linear + 1):
        names[f"W{k}"], names[f"b{k}"] = f"net.{index}.weight", f"net.{index}.bias"
        index += 1
        if k == n_linear:
            break
        if batchnorm:
            for ours, theirs in (("gamma", "weight"), ("beta", "bias"), ("running_mean", "running_mean"),
                                 ("running_var", "running_var"), ("num_batches_tracked", "num_batches_tracked")):
                names[f"{ours}{k}"] = f"net.{index}.{theirs}"
            index += 1
        index += 1 + bool(dropout)  # the activation, and the dropout after it
    return names


def scratch_names(state_dict_keys):
    """{state_dict key: scratch name} read off the keys alone (any options), or ValueError.

    At each index, a Linear holds weight and bias only; a BatchNorm1d also holds running_mean.
    The k-th batch norm follows the k-th Linear.
    """
    by_index = {}
    for key in state_dict_keys:
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "net" or not parts[1].isdigit():
            raise ValueError(f"tensor {key!r} is not part of an MLP state_dict (net.<i>.<name>)")
        by_index.setdefault(int(parts[1]), []).append(parts[2])
    names, k = {}, 0
    for index in sorted(by_index):
        fields = set(by_index[index])
        if fields == {"weight", "bias"}:
            k += 1
            names[f"net.{index}.weight"], names[f"net.{index}.bias"] = f"W{k}", f"b{k}"
        elif {"weight", "bias", "running_mean", "running_var"} <= fields:
            for field in fields:
                names[f"net.{index}.{field}"] = {"weight": "gamma", "bias": "beta"}.get(field, field) + str(k)
        else:
            raise ValueError(f"layer net.{index} holds {sorted(fields)}: neither a Linear nor a BatchNorm1d")
    return names


# ----------------------------------------------------------------------------- any Linear-only MLP's state_dict
#
# A reader's own module saves keys of its own. Its state_dict lists the tensors in the order the
# modules were assigned in __init__, which is the order they run in nearly every MLP. The keys
# are grouped by prefix (all before the last dot) into layers; the k-th Linear in the file
# becomes W_k, b_k and the k-th BatchNorm1d gamma_k, beta_k, ..., whatever their names, when
# every shape fits the network the flags build. Read in file order the mapping is unique. When
# the file's order does not fit but the same shapes do in another order (a class that assigns
# its output layer first), the shapes decide, provided no two layers share a shape; when two do
# (784-64-64-64-10: which (64, 64) runs first?) nothing in the file tells, and it is refused.

MLP_FIELDS = {"Linear": {"weight": "W", "bias": "b"},
              "BatchNorm1d": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean",
                              "running_var": "running_var", "num_batches_tracked": "num_batches_tracked"}}
_FIELD_OF = {ours: (kind, theirs) for kind, fields in MLP_FIELDS.items() for theirs, ours in fields.items()}
NOT_A_LAYER = ("neither a Linear (weight 2-D, bias 1-D, one per row) nor a BatchNorm1d (weight, bias, "
               "running_mean, running_var of one width, and num_batches_tracked), the only layers of this MLP")
BUILT = "the network built from the flags"


class Layer(NamedTuple):
    """A Linear or a BatchNorm1d: in a file, {field: state_dict key} ({'weight': 'fc1.weight', ...});
    in the model, {field: scratch name} ({'weight': 'W1', ...}). shape: its weight's."""

    kind: str
    shape: tuple
    keys: dict


def is_mlp_keys(state_dict_keys):
    """True for torchimpl's own keys, net.<i>.<name>, which scratch_names reads off the names alone."""
    parts = [key.split(".") for key in state_dict_keys]
    return bool(parts) and all(len(p) == 3 and p[0] == "net" and p[1].isdigit() for p in parts)


def file_layers(shapes):
    """[Layer] from {state_dict key: shape tuple}, in the file's order; ValueError names the keys
    and shapes of a prefix that is neither a Linear nor a BatchNorm1d."""
    groups = {}
    for key, shape in shapes.items():
        prefix, _, field = key.rpartition(".")
        groups.setdefault(prefix, {})[field] = (key, tuple(shape))
    layers = []
    for fields in groups.values():
        shape = {field: s for field, (_, s) in fields.items()}
        kind = _kind(shape)
        if kind is None:
            raise ValueError(", ".join(f"{key} {s}" for key, s in fields.values()) + f": {NOT_A_LAYER}")
        layers.append(Layer(kind, shape["weight"], {field: key for field, (key, _) in fields.items()}))
    return layers


def _kind(shape):
    if set(shape) == {"weight", "bias"} and len(shape["weight"]) == 2 and shape["bias"] == shape["weight"][:1]:
        return "Linear"
    stats = ("weight", "bias", "running_mean", "running_var")
    if (set(shape) - {"num_batches_tracked"} == set(stats) and len(shape["weight"]) == 1
            and all(shape[f] == shape["weight"] for f in stats) and shape.get("num_batches_tracked", ()) == ()):
        return "BatchNorm1d"
    return None


def model_layers(expected):
    """[Layer] from the model's [(scratch name, shape)] in its order (W1, b1, gamma1, ..., W2)."""
    layers = {}
    for name, shape in expected:
        base = name.rstrip("0123456789")
        kind, field = _FIELD_OF[base]
        layers.setdefault((kind, name[len(base):]), {})[field] = (name, tuple(shape))
    return [Layer(kind, fields["weight"][1], {f: name for f, (name, _) in fields.items()})
            for (kind, _), fields in layers.items()]


def _named_in_order(found):
    """The file's own layers named in its order, when there is no model to match."""
    counts, layers = {}, []
    for layer in found:
        k = counts[layer.kind] = counts.get(layer.kind, 0) + 1
        layers.append(Layer(layer.kind, layer.shape, {f: ours + str(k) for f, ours in MLP_FIELDS[layer.kind].items()}))
    return layers


def match_layers(shapes, expected=None):
    """({state_dict key: scratch name} in the model's order, whether the shapes alone decided)
    for any Linear-only MLP's {key: shape} in file order, against the model's [(scratch name,
    shape)] (None: the file's layers named in its order). ValueError, naming the keys and their
    shapes, when no mapping fits or more than one does."""
    found = file_layers(shapes)
    wanted = _named_in_order(found) if expected is None else model_layers(expected)
    partners, by_shape = {}, False
    for kind in MLP_FIELDS:
        theirs, shuffled = _match_kind(kind, [layer for layer in found if layer.kind == kind],
                                       [layer for layer in wanted if layer.kind == kind], found, wanted)
        partners[kind], by_shape = iter(theirs), by_shape or shuffled
    names = {}
    for layer in wanted:  # the model's order: W1, b1, gamma1, ..., W2, ...
        other = next(partners[layer.kind])
        names.update({other.keys[field]: name for field, name in layer.keys.items() if field in other.keys})
    return names, by_shape


def _match_kind(kind, theirs, ours, found, wanted):
    """The file's layers of one kind in the order of the model's, and whether the shapes alone decided."""
    if len(theirs) != len(ours):
        raise ValueError(f"the file holds {_listing(theirs, kind)} where {BUILT} has {_listing(ours, kind)}: "
                         f"{_hint(found, wanted)}")
    if [layer.shape for layer in theirs] == [layer.shape for layer in ours]:
        return theirs, False
    other, mine = next((t, o) for t, o in zip(theirs, ours) if t.shape != o.shape)
    if sorted(layer.shape for layer in theirs) != sorted(layer.shape for layer in ours):
        raise ValueError(f"{other.keys['weight']} has shape {other.shape} where {BUILT} needs "
                         f"{mine.keys['weight']} {mine.shape}: {_hint(found, wanted)}")
    same = {}
    for layer in theirs:
        same.setdefault(layer.shape, []).append(layer)
    tied = next((group for group in same.values() if len(group) > 1), None)
    if tied:
        slots = [o.keys["weight"] for o in ours if o.shape == tied[0].shape]
        raise ValueError(f"the file does not list its {kind} layers in the order of {BUILT} "
                         f"({other.keys['weight']} {other.shape} comes where {mine.keys['weight']} {mine.shape} "
                         f"belongs), and their shapes fit more than one order: "
                         f"{' and '.join(t.keys['weight'] for t in tied)} are {'both' if len(tied) == 2 else 'all'} "
                         f"{tied[0].shape}, each could be "
                         f"{' or '.join(slots)}; save the state_dict of a module that assigns its layers in the "
                         f"order they run (an nn.Sequential does)")
    return [same[o.shape][0] for o in ours], True


def _listing(layers, kind):
    """'2 Linear layers (fc1.weight (128, 784), fc2.weight (10, 128))', 'no BatchNorm1d layers'."""
    n = len(layers)
    text = f"{n or 'no'} {kind} layer{'s' * (n != 1)}"
    return text + (" (" + ", ".join(f"{layer.keys['weight']} {layer.shape}" for layer in layers) + ")" if n else "")


def _widths(layers):
    """The widths of the Linear layers in this order ([784, 128, 10]), or None where they do not chain."""
    linear = [layer.shape for layer in layers if layer.kind == "Linear"]
    if not linear or any(after[1] != before[0] for before, after in zip(linear, linear[1:])):
        return None
    return [linear[0][1]] + [out for out, _ in linear]


def _hint(found, wanted):
    """The flags that build the file's network, as far as the file shows it."""
    theirs, ours = _widths(found), _widths(wanted)
    if theirs is None or ours is None:
        return ("the file was made for another network: build one with its layer sizes and options "
                "(--hidden, --batchnorm)")
    if (theirs[0], theirs[-1]) != (ours[0], ours[-1]):
        return (f"the file's network is {'-'.join(map(str, theirs))}, the flags build {'-'.join(map(str, ours))}: "
                f"use the --data or --preset it was trained for, and its --hidden widths")
    norms = [any(layer.kind == "BatchNorm1d" for layer in layers) for layers in (found, wanted)]
    flags = [] if theirs == ours else ["--hidden " + " ".join(map(str, theirs[1:-1])) if len(theirs) > 2
                                       else "--hidden with no widths"]
    flags += ["--batchnorm"] * (norms[0] and not norms[1])
    text = "pass " + " and ".join(flags) if flags else ""
    if norms[1] and not norms[0]:
        text += " without --batchnorm" if text else "drop --batchnorm"
    return text or "with --batchnorm the network has a BatchNorm1d after every hidden Linear, of its width"
