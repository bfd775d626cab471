"""Save and load the PyTorch twin's model: torch.save'd state_dicts, and the NumPy twin's .npz.

Twin: scratch/extras/checkpoint.py. save() writes model.state_dict() with torch.save, the chapters'
idiom, atomically; load() reads either twin's file, or any Linear-only MLP's state_dict (matched
by the order and shapes of its layers, with a note of the mapping on stderr), into the model,
checking every name and shape first. A .npz holds scratch's names (W1, b1, gamma1,
running_mean1, ...), mapped to this model's state_dict keys by common/layout.py; torch.load runs
with weights_only=True, so a file can hold tensors but no code. Try it:
    python -m torchimpl.train --preset student --save student.pt
    python -m scratch.train --preset student --load student.pt --epochs 0
"""

import pickle
import re
import zipfile

import numpy as np
import torch

from common import checkpoint as files
from common.errors import InputError
from common.layout import ACTIVATION_MODULES, scratch_names

# ----------------------------------------------------------------------------- reading files


def read_npz(path):
    """({name: tensor} in the file's order, arch record or None) from a .npz file, no pickles."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path} is not a readable .npz model file: {err}") from None
    text = arrays.pop(files.ARCH_KEY, None)
    tensors = {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}
    return tensors, None if text is None else files.parse_arch_record(str(text), path)


def read_torch_file(path):
    """{state_dict key: tensor} from a torch.save archive, in the file's order."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError,
            TypeError, AttributeError, KeyError, OSError) as err:
        module = files.pickled_module(path) if isinstance(err, pickle.UnpicklingError) else None
        if module:  # torch.save(model): weights_only refused its class, before anything ran
            raise files.whole_module_error(path, module) from None
        found = re.search(r"GLOBAL ([\w.]+)", str(err))  # torch names the global it refused
        lines = str(err).strip().splitlines() or [type(err).__name__]
        why = f"{found.group(1)} is not part of a state_dict" if found else lines[0]
        raise InputError(f"{path} is not a state_dict of tensors: {why}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in state.items()):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors: "
                         f"save model.state_dict()")
    return dict(state)


def read(path):
    """({scratch name: tensor} in the file's order, arch record or None) from either twin's file;
    another module's state_dict has its layers named in the file's order."""
    tensors, record, _ = _read(path)
    return tensors, record


def _read(path, expected=None):
    """read(), matching another module's state_dict to the model's [(name, shape)], and its note."""
    if files.file_kind(path) == "npz":
        return (*read_npz(path), None)
    state = read_torch_file(path)
    names, note = files.scratch_keys({key: tuple(value.shape) for key, value in state.items()}, path, expected)
    return {names[key]: value for key, value in state.items()}, None, note


# ----------------------------------------------------------------------------- save and load


def save(path, model):
    """Write model.state_dict() to `path` with torch.save (whatever its name), atomically."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    files.atomic_write(path, lambda f: torch.save(state, f))


def load(path, model):
    """Load the model in `path` (either twin's format, or any Linear-only MLP's state_dict) into
    `model`, on its device and dtype.

    Every name and shape is checked before anything is copied: a file made for another
    architecture raises InputError naming the first tensor that differs. Another module's
    state_dict is matched by the order and shapes of its layers (common/layout.py), and a
    one-line note of the mapping goes to stderr. The .npz's record is checked against the
    model's activation and output layer.
    """
    own = model.state_dict()
    names = scratch_names(own)  # own key -> scratch name
    keys = {name: key for key, name in names.items()}
    expected = [(names[key], tuple(value.shape)) for key, value in own.items()]
    tensors, record, note = _read(path, expected)
    if note:  # another module's file: a batch norm's counter may be absent (kept as it is)
        expected = [(name, shape) for name, shape in expected
                    if name in tensors or not name.startswith("num_batches_tracked")]
    files.check_tensors(expected, [(name, tuple(t.shape)) for name, t in tensors.items()], path,
                        lambda name: keys.get(name, "?"))
    files.check_arch(record, _activation(model), isinstance(model.net[-1], torch.nn.Sigmoid), path)
    model.load_state_dict({key: tensors[names[key]].to(value.dtype) if names[key] in tensors else value
                           for key, value in own.items()})
    if note:
        files.note(note)
    return record


_ACTIVATION_NAMES = {module: name for name, module in ACTIVATION_MODULES.items()}  # ReLU -> relu


def _activation(model):
    """The hidden activation's flag name (relu, ...), or None without a hidden layer."""
    modules = list(model.net)
    linear = [i for i, m in enumerate(modules) if isinstance(m, torch.nn.Linear)]
    for m in modules[linear[0] + 1:linear[1]] if len(linear) > 1 else []:
        if not isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)):
            return _ACTIVATION_NAMES.get(type(m).__name__, type(m).__name__)
    return None
