"""The names both twins share: activations and optimizers as torch spells them, and where each
scratch array lives in the torch twin's state_dict. Names only, no tensors.

torchimpl's MLP.net is an nn.Sequential holding, for every hidden layer, Linear, [BatchNorm1d],
the activation, [Dropout]; then the last Linear and [Sigmoid]. Modules without tensors still
take an index, so the keys depend on the options:

    784-128-10, plain:              W1 -> net.0.weight   W2 -> net.2.weight
    784-128-10, batchnorm, dropout: W1 -> net.0.weight   gamma1 -> net.1.weight   W2 -> net.4.weight
"""

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
