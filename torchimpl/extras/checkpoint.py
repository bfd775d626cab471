"""Save and load the PyTorch twin's model: torch.save'd state_dicts, and the NumPy twin's .npz.

Twin: scratch/extras/checkpoint.py. save() writes model.state_dict() with torch.save, the chapters'
idiom, atomically; load() reads either twin's file, or any Linear-only MLP's state_dict (matched
by the order and shapes of its layers, with a note of the mapping on stderr), into the model,
checking every name and shape first. A .npz holds scratch's names (W1, b1, gamma1,
running_mean1, ...), mapped to this model's state_dict keys by common/layout.py; torch.load runs
with weights_only=True, so a file can hold tensors but no code.

What load() checks, before torch.load reads a byte of tensor data (common/archive.py, the same
checks as scratch's): the zip archive's member count and sizes against what this model's
tensors need, every name and shape against the model's, each tensor's sizes, strides and offset
inside its storage (no stride 0, nothing past the end, no size of 2**63), real floating-point
dtypes only (an .npz's big-endian arrays made native), the .npz's architecture record field by
field, data.pkl through an allowlisting unpickler, and the CRC-32 of every member torch.load will
read (torch checks none). Then NaN and infinity are refused unless allow_nonfinite. Every
refusal is one InputError line; torch's advice to retry without weights_only is never passed on.
Try it:
    python -m torchimpl.train --preset student --save student.pt
    python -m scratch.train --preset student --load student.pt --epochs 0
"""

import math
import re

import numpy as np
import torch

from common import checkpoint as files, outputs
from common.errors import InputError
from common.layout import ACTIVATION_MODULES, scratch_names

# ----------------------------------------------------------------------------- reading files

_TORCH_OF = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
            "float64": torch.float64, "int64": torch.int64, "int32": torch.int32}


def _tensors(contents, names):
    """A checked file's tensors `names` ({scratch name: tensor}), read only now: an .npz through
    NumPy, a torch.save archive through torch.load(weights_only=True) once every CRC-32 it will
    read is verified, and what torch built compared with what was checked."""
    if contents.kind == "npz":
        tensors = {}
        for name in names:
            spec = contents.specs[name]
            dtype = np.dtype(spec.descr)
            flat = np.frombuffer(contents.member(spec), dtype, math.prod(spec.shape), spec.offset)
            array = flat.reshape(spec.shape, order="F" if spec.fortran else "C")
            tensors[name] = torch.from_numpy(array.astype(dtype.newbyteorder("="), order="C"))  # native order
        return tensors
    contents.verify()
    try:
        state = torch.load(contents.path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 the file passed common/archive.py's checks; say why torch did not
        raise InputError(f"{contents.path} is not a state_dict of tensors: {_reason(err)}") from None
    tensors = {name: state.get(contents.keys[name]) if isinstance(state, dict) else None for name in names}
    for name, tensor in tensors.items():
        spec = contents.specs[name]
        if (not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != spec.shape
                or tensor.dtype != _TORCH_OF[spec.storage.dtype]):
            raise InputError(f"{contents.path}: torch.load read {contents.keys[name]} otherwise than its archive "
                             f"describes it: the file is damaged; save the model again")
    return tensors


def _reason(err):
    """torch.load's reason in one line, without its advice to retry with weights_only=False,
    which would run whatever the file holds."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text)  # torch names the global it refused
    if found:
        return f"{found.group(1)} is not part of a state_dict"
    text = text.split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return (lines[0] if lines else type(err).__name__)[:300]


def read_npz(path):
    """({name: tensor} in the file's order, arch record or None) from a .npz file, no pickles."""
    with files.ModelFile(path) as contents:
        if contents.kind != "npz":
            raise InputError(f"{path} is not a .npz model file: it was written by torch.save")
        contents.check(None, None)
        return _tensors(contents, list(contents.specs)), contents.record


def read_torch_file(path):
    """{state_dict key: tensor} from a torch.save archive, in the file's order."""
    with files.ModelFile(path, match=False) as contents:
        if contents.kind != "torch":
            raise InputError(f"{path} is not a torch.save archive: it is a .npz file")
        contents.check(None, None)
        return {contents.keys[name]: tensor for name, tensor in _tensors(contents, list(contents.specs)).items()}


def read(path):
    """({scratch name: tensor} in the file's order, arch record or None) from either twin's file;
    another module's state_dict has its layers named in the file's order. Without a model to
    size them, a file may hold at most common.archive's NO_MODEL_BYTES of tensors."""
    with files.ModelFile(path) as contents:
        contents.check(None, None)
        return _tensors(contents, list(contents.specs)), contents.record


# ----------------------------------------------------------------------------- save and load


def save(path, model):
    """Write model.state_dict() to `path` with torch.save (whatever its name), atomically."""
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    outputs.atomic_write(path, lambda f: torch.save(state, f))


def load(path, model, allow_nonfinite=False):
    """Load the model in `path` (either twin's format, or any Linear-only MLP's state_dict) into
    `model`, on its device and dtype.

    Every name and shape is checked before any data is read (common.checkpoint.ModelFile):
    a file made for another architecture raises InputError naming the first tensor that
    differs. Another module's state_dict is matched by the order and shapes of its layers
    (common/layout.py), and a one-line note of the mapping goes to stderr. The .npz's record is
    checked against the model's activation and output layer. A tensor holding NaN or infinity
    is refused, unless allow_nonfinite, which lets it through with a note.
    """
    own = model.state_dict()
    names = scratch_names(own)  # own key -> scratch name
    keys = {name: key for key, name in names.items()}
    expected = [(names[key], tuple(value.shape)) for key, value in own.items()]
    with files.ModelFile(path, expected) as contents:
        expected = contents.check(expected, lambda name: keys.get(name, "?"))
        files.check_arch(contents.record, _activation(model), isinstance(model.net[-1], torch.nn.Sigmoid), path)
        tensors = _tensors(contents, [name for name, _ in expected])
    bad = [(name, keys.get(name, "?"), int(t.numel() - torch.isfinite(t).sum()), t.numel())
           for name, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad and not allow_nonfinite:
        raise files.nonfinite(path, bad, False)
    model.load_state_dict({key: tensors[names[key]].to(value.dtype) if names[key] in tensors else value
                           for key, value in own.items()})
    for line in ([contents.note] if contents.note else []) + ([files.nonfinite(path, bad, True)] if bad else []):
        files.note(line)
    return contents.record


_ACTIVATION_NAMES = {module: name for name, module in ACTIVATION_MODULES.items()}  # ReLU -> relu


def _activation(model):
    """The hidden activation's flag name (relu, ...), or None without a hidden layer."""
    modules = list(model.net)
    linear = [i for i, m in enumerate(modules) if isinstance(m, torch.nn.Linear)]
    for m in modules[linear[0] + 1:linear[1]] if len(linear) > 1 else []:
        if not isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)):
            return _ACTIVATION_NAMES.get(type(m).__name__, type(m).__name__)
    return None
