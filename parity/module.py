"""Parity for a reader's own PyTorch MLP: python -m parity --module FILE.py:NAME, or compare_module().

parity/trace.py reads the module's structure from its own computation (torch.fx) and maps its
tensors onto the scratch network's (fc1.weight -> W1, ...). Here the scratch network starts from
the module's very weights, the usual checks run on the module itself (parity/run.py: one batch,
K training steps with the optimizer flags, the test set, float64 then float32), and every record
carries the reader's own tensor name beside scratch's. Try it (a module written in a notebook):
    from parity.module import compare_module
    report = compare_module(my_model, X[:1280], y[:1280], steps=20)
    print(report.mapping, report.ok)
"""

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from common.errors import InputError
from parity import report
from parity.run import DTYPES, Config, run
from parity.steps import with_given_masks
from parity.trace import trace

# ----------------------------------------------------------------------------- the run


@dataclass
class ModuleReport:
    """What compare_module found: the traced structure, one parity.run.Result per dtype (records
    named 'W1 (fc1.weight)', ...), the mapping as lines, and the verdicts a learner reads."""

    structure: object
    results: list
    mapping: list
    verdicts: list = field(default_factory=list)

    @property
    def ok(self):
        return all(result.ok for result in self.results)

    @property
    def records(self):
        return [record for result in self.results for record in result.records]


def config_for(structure, config):
    """config with the network the module computes: its widths, activation, batch norm and dropout.
    A sigmoid output goes with --loss bce (probabilities), logits with any other loss."""
    if structure.output == "sigmoid" and config.loss != "bce":
        raise InputError(f"the module ends in a sigmoid (it returns probabilities), so its loss is --loss bce; "
                         f"got --loss {config.loss}")
    if structure.output != "sigmoid" and config.loss == "bce":
        raise InputError("--loss bce takes probabilities, but the module returns logits: use --loss bce-logits, "
                         "or end the module in a sigmoid")
    return dataclasses.replace(config, layer_sizes=tuple(structure.layer_sizes), activation=structure.activation,
                               batchnorm=structure.batchnorm, dropout=structure.dropout)


def starter(model, structure):
    """start(dtype, rng) for parity.run: the scratch arrays copied from the module's own tensors, and
    a copy of the module in that dtype, carrying its name map and its dropout order for parity."""
    repeated = {name for name in structure.dropout_modules if structure.dropout_modules.count(name) > 1}
    if repeated:
        raise InputError(f"the module applies {sorted(repeated)[0]} at more than one layer; parity hands each "
                         f"layer its own dropout mask: give each layer its own nn.Dropout")
    keys = {**structure.parameters, **structure.buffers}

    def start(dtype, rng):
        net = copy.deepcopy(model).to(getattr(torch, dtype))
        net.scratch_keys = {ours: key for key, ours in keys.items()}
        net.dropout_modules = list(structure.dropout_modules)
        state = net.state_dict()
        params = {ours: state[key].detach().cpu().numpy().copy() for key, ours in structure.parameters.items()}
        buffers = {ours: int(state[key]) if ours.startswith("num_batches_tracked") else state[key].cpu().numpy().copy()
                   for key, ours in structure.buffers.items()}
        return params, buffers, with_given_masks(net)

    return start


NAME = re.compile(r"^(d?)(W|b|gamma|beta|running_mean|running_var)(\d+)(.*)$")


def labelled(results, structure):
    """Each record named as before, with the module's own name for its tensor beside it (in place)."""
    theirs = {ours: key for key, ours in {**structure.parameters, **structure.buffers}.items()}
    for result in results:
        for record in result.records:
            match = NAME.match(record.name)
            key = match and theirs.get(match.group(2) + match.group(3))
            if key:  # a gradient dW1 is fc1.weight.grad; a buffer 'W1 exp_avg' is fc1.weight's exp_avg
                record.name = f"{record.name} ({key}{'.grad' if match.group(1) else ''}{match.group(4)})"
    return results


def verdicts(structure, results):
    """What a learner should read first: the trace's findings, then what the records say."""
    found = list(structure.notes)
    failing = [r for result in results for r in result.records if not r.ok]
    if failing and structure.output == "softmax":
        found.append("parity fails because of that softmax: the module computes cross-entropy of "
                     "log_softmax(softmax(z)) where the hand-written network computes it of log_softmax(z); "
                     "return the logits from forward and let nn.CrossEntropyLoss apply the softmax")
    elif failing:
        found.append(f"{len(failing)} records out of tolerance, the first {failing[0].name} "
                     f"({failing[0].check}): the module computes something else than the scratch network "
                     f"of the same structure")
    return found


def compare_module(model, X, y, X_test=None, y_test=None, *, steps=None, optimizer="sgd", lr=None, momentum=0.0,
                   nesterov=False, weight_decay=None, schedule="none", batch_size=64, seed=0, loss="ce",
                   dtypes=DTYPES, on_result=None, structure=None):
    """The usual parity checks on `model` (an nn.Module built from Linear layers): it and the scratch
    network of the same structure, started from the module's own weights, on X (N, D) and y (N,);
    tested on X_test, y_test (default: the training data). structure: trace(model), where the
    caller has it already. Returns a ModuleReport."""
    structure = trace(model) if structure is None else structure
    X, y = np.asarray(X), np.asarray(y)
    test = (X, y) if X_test is None else (np.asarray(X_test), np.asarray(y_test))
    config = config_for(structure, Config(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                          batch_size=batch_size, seed=seed, steps=steps, dtypes=tuple(dtypes),
                                          loss=loss, optimizer=optimizer, schedule=schedule))

    def done(result):  # each dtype's records take the module's names before anyone reads them
        labelled([result], structure)
        if on_result is not None:
            on_result(result)

    results = run(config, ((X, y), test), on_result=done, start=starter(model, structure))
    return ModuleReport(structure, results, structure.mapping_lines(), verdicts(structure, results))


# ----------------------------------------------------------------------------- the program

NETWORK_FLAGS = ("--hidden", "--activation", "--batchnorm", "--dropout")


def check_flags_against(structure, config, argv):
    """A network flag given explicitly must describe the module as it is: the layer order or widths,
    the activation, batch norm or dropout being other than the flags say is a classic slip."""
    given = {flag for flag in NETWORK_FLAGS if any(a == flag or a.startswith(flag + "=") for a in argv)}
    found = {"--hidden": (list(structure.layer_sizes[1:-1]), list(config.layer_sizes[1:-1])),
             "--activation": (structure.activation, config.activation),
             "--batchnorm": (structure.batchnorm, config.batchnorm),
             "--dropout": (structure.dropout, config.dropout)}
    for flag in NETWORK_FLAGS:
        theirs, asked = found[flag]
        if flag in given and theirs != asked:
            layers = "-".join(map(str, structure.layer_sizes))
            raise InputError(f"the module computes {layers} with {structure.activation}"
                             f"{', batch norm' * structure.batchnorm}"
                             f"{f', dropout {structure.dropout:g}' if structure.dropout else ''}, but {flag} says "
                             f"{asked}: the layers in the module's forward differ from the flags; fix the module, "
                             f"or drop {flag} (parity reads the network from the module)")


def main(args, argv, config, data):
    """python -m parity --module SPEC: print the mapping and each dtype's table as it is done
    (text mode); return (the ModuleReport, the run's config) for the summary."""
    import json

    from parity.trace import load_module

    try:
        kwargs = json.loads(args.module_args) if args.module_args else None
    except json.JSONDecodeError as err:
        raise InputError(f"--module-args must be a JSON object of keyword arguments: {err}") from None
    if kwargs is not None and not isinstance(kwargs, dict):
        raise InputError(f"--module-args must be a JSON object of keyword arguments, got {args.module_args}")
    model = load_module(args.module, kwargs)
    structure = trace(model)
    check_flags_against(structure, config, argv)
    config = config_for(structure, config)
    (X, y), (X_test, y_test) = data
    steps = config.steps or math.ceil(len(X) / config.batch_size)
    if not args.json:
        print(f"{args.module}: {'-'.join(map(str, structure.layer_sizes))} {structure.activation}, "
              f"outputs {structure.output}; its tensors as scratch's:\n  " + "\n  ".join(structure.mapping_lines())
              + "\n\n" + report.describe(config, len(X), len(X_test), steps) + "\n" + report.LEGEND + "\n",
              flush=True)

    def show(result):
        print(report.format_result(result) + "\n", flush=True)

    found = compare_module(model, X, y, X_test, y_test, steps=config.steps, optimizer=config.optimizer,
                            lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                            weight_decay=config.weight_decay, schedule=config.schedule,
                            batch_size=config.batch_size, seed=config.seed, loss=config.loss,
                           dtypes=config.dtypes, on_result=None if args.json else show, structure=structure)
    return found, config
