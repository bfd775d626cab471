"""What both twins' model files share: atomic writes, telling the formats apart, clear mismatches.

scratch/extras/checkpoint.py writes .npz files (arrays under scratch's names W1, b1, gamma1, ...,
plus an "arch" JSON record); torchimpl/extras/checkpoint.py writes state_dicts with torch.save (a zip
archive holding data.pkl and one raw file per storage). Each twin reads both, and any other
Linear-only MLP's state_dict too, matched by the order and shapes of its layers (common/layout.py).
This module knows only names, shapes and bytes on disk: no NumPy, no torch.
"""

import json
import os
import pickletools
import sys
import tempfile
import zipfile
from pathlib import Path

from common.errors import InputError
from common.layout import is_mlp_keys, match_layers, scratch_names

ARCH_KEY = "arch"  # the .npz member holding the JSON architecture record
FORMAT = "mlp-twins model"
VERSION = 1

# ----------------------------------------------------------------------------- writing


def check_writable(path):
    """Refuse a target whose folder is missing before a long run, not after it."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise InputError(f"cannot save to {path}: the folder {folder} does not exist")
    if Path(path).is_dir():
        raise InputError(f"cannot save to {path}: it is a folder; give a file name")


def atomic_write(path, write):
    """Call write(binary_file) on a temporary file beside `path`, fsync it, then rename it over
    `path`. Until the rename, `path` keeps its old content (or stays absent); if write raises,
    the temporary file is removed and the exception propagates. The rename is atomic on POSIX
    and Windows when both names are in the same folder, which is why the temporary file is
    created there.
    """
    path = Path(path)
    check_writable(path)
    fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode open() would
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(path.resolve().parent)


def _umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_folder(folder):
    """Make the rename itself durable where the OS allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- reading


def file_kind(path):
    """'npz' (scratch's format) or 'torch' (torch.save's zip format), read off the archive's
    member names; InputError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cannot load {path}: no such file")
    not_model = (f"{path} is not a model file: expected a .npz written by python -m scratch.train "
                 f"--save or a state_dict written by torch.save (python -m torchimpl.train --save)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InputError(not_model) from None
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return "torch"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    raise InputError(not_model)


def torch_archive_layout(names, path):
    """(prefix, byteorder member or None) of a torch.save archive: members live under one
    top-level folder ('archive/' in torch 2.x), data.pkl beside data/<storage key> files."""
    pickles = [name for name in names if name == "data.pkl" or name.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise InputError(f"{path} holds {len(pickles)} data.pkl files: not a torch.save archive")
    prefix = pickles[0][:-len("data.pkl")]
    byteorder = prefix + "byteorder"
    return prefix, byteorder if byteorder in names else None


def scratch_keys(shapes, path, expected=None):
    """({state_dict key: scratch name}, note or None) for a file's {key: shape tuple}.

    torchimpl's own keys ('net.0.weight') are read off the names (common.layout.scratch_names).
    Any other module's keys (fc1.weight; '1.weight' of an nn.Sequential behind nn.Flatten) are
    matched to the model's [(scratch name, shape)] `expected` by the order and shapes of their
    layers (common.layout.match_layers), and the note says which key went where.
    """
    if is_mlp_keys(shapes):
        try:
            return scratch_names(shapes), None
        except ValueError as err:
            raise InputError(f"{path} is not a state_dict of this MLP: {err}") from None
    try:
        names, by_shape = match_layers(shapes, expected)
    except ValueError as err:
        raise InputError(f"{path}: {err}") from None
    how = " (its layers matched by shape: the file lists them in another order)" if by_shape else ""
    return names, f"loaded {path}{how}: " + ", ".join(f"{key} -> {name}" for key, name in names.items())


def note(line):
    """A line about a load, on stderr: stdout stays the run's lines (and valid JSON with --json)."""
    print(line, file=sys.stderr, flush=True)


def pickled_module(path):
    """The class ('mymodule.Net') of a whole nn.Module that torch.save(model) pickled into the
    archive at `path`, read off the pickle's opcodes without running them; None for anything else.

    A whole module pickles its class first (the top-level object), then its __dict__, whose keys
    every nn.Module has: _parameters, _buffers, _modules.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            prefix, _ = torch_archive_layout(archive.namelist(), path)
            data = archive.read(prefix + "data.pkl")
    except (InputError, zipfile.BadZipFile, OSError, KeyError, ValueError):
        return None
    classes, strings, recent = [], set(), ["", ""]  # recent: the last two strings pushed
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":  # protocol 2, torch.save's: the argument is "module name"
                classes.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL":  # protocol 4 and later: module and name pushed before it
                classes.append(".".join(recent))
            elif isinstance(arg, str):
                recent = [recent[1], arg]
                strings.add(arg)
    except (ValueError, EOFError):  # a damaged pickle: the opcodes read so far still tell
        pass
    return classes[0] if classes and {"_parameters", "_buffers", "_modules"} <= strings else None


def whole_module_error(path, module):
    return InputError(f"{path} holds a whole pickled module ({module}), which cannot be loaded safely: "
                      f"save model.state_dict() instead (torch.save(model.state_dict(), path))")


# ----------------------------------------------------------------------------- checking


def arch_record(layer_sizes, activation, batchnorm, dropout, sigmoid_output, dtype):
    """The JSON record stored beside the arrays in a .npz file."""
    return {"format": FORMAT, "version": VERSION, "layer_sizes": list(layer_sizes),
            "activation": activation, "batchnorm": bool(batchnorm), "dropout": float(dropout),
            "sigmoid_output": bool(sigmoid_output), "dtype": dtype}


def parse_arch_record(text, path):
    try:
        record = json.loads(text)
    except ValueError:
        raise InputError(f"{path}: its architecture record is not JSON: the file is damaged") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"{path}: its '{ARCH_KEY}' entry is not an {FORMAT} record")
    return record


def check_arch(record, activation, sigmoid_output, path):
    """Refuse a file trained with another activation or output layer, which the tensors'
    names and shapes cannot show. Dropout is not compared: it holds no tensors, and weights
    trained with it are used without it in evaluation anyway."""
    if record is None:
        return
    hidden = len(record.get("layer_sizes", [])) > 2  # without a hidden layer, no activation runs
    if hidden and activation is not None and record.get("activation") != activation:
        raise InputError(f"{path} was trained with {record.get('activation')} activations but the "
                         f"model uses {activation}: pass --activation {record.get('activation')}")
    if bool(record.get("sigmoid_output")) != bool(sigmoid_output):
        had = "a sigmoid output (--loss bce)" if record.get("sigmoid_output") else "no sigmoid output"
        raise InputError(f"{path} was saved from a model with {had}, the model here differs: "
                         f"use the --loss it was trained with")


def check_tensors(expected, found, path, torch_key):
    """Raise InputError naming the first tensor whose name or shape differs.

    expected, found: [(scratch name, shape tuple)] in the model's order and the file's order.
    torch_key(name) gives the model's state_dict key for a scratch name, for the message.
    """
    found_shapes = dict(found)
    hint = "the file was made for another architecture: build the model with the same layer sizes and options"
    for name, shape in expected:
        if name not in found_shapes:
            raise InputError(f"{path}: the model's tensor {name} ({torch_key(name)}) is missing "
                             f"from the file; {hint} (--hidden, --batchnorm, --preset)")
        if tuple(found_shapes[name]) != tuple(shape):
            raise InputError(f"{path}: tensor {name} ({torch_key(name)}) has shape "
                             f"{tuple(found_shapes[name])} in the file but {tuple(shape)} in the "
                             f"model; {hint} (--hidden, --preset)")
    wanted = {name for name, _ in expected}
    for name, shape in found:
        if name not in wanted:
            raise InputError(f"{path}: the file holds tensor {name} {tuple(shape)}, which the model "
                             f"has no place for; {hint} (--hidden, --batchnorm, --preset)")


def dumps(record):
    return json.dumps(record, sort_keys=True)
