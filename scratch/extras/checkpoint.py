"""Save and load the NumPy twin's model: .npz files, and torch.save's files read without torch.

Twin: torchimpl/extras/checkpoint.py. save() writes the parameters and batch norm buffers under
scratch's names (W1, b1, gamma1, beta1, running_mean1, ...), in state_dict order, plus an
"arch" JSON record (layer sizes, activation, options, dtype), atomically. load() reads either
twin's file, or any Linear-only MLP's state_dict (matched by the order and shapes of its layers,
with a note of the mapping on stderr), into existing arrays, checking every name and shape first.

A torch.save file is a zip archive: <prefix>/data.pkl is a pickle of the state_dict whose
tensors are calls to torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
whose storages are persistent ids ('storage', torch.FloatStorage, key, location, numel)
pointing at the raw bytes in <prefix>/data/<key>. common.archive.StateDictUnpickler reads that
into descriptions of tensors and refuses every other global, so loading runs no code from the
file; NumPy then rebuilds each tensor from its storage's bytes.

What load() checks, before a byte of tensor data is read or inflated (common/archive.py, the
same checks as the torch twin's): the zip archive's member count and sizes against what this
model's tensors need, every name and shape against the model's (an .npz member's from its
header alone), each tensor's sizes, strides and offset inside its storage (no stride 0, nothing
past the end, no size of 2**63), real floating-point dtypes only (big-endian made native), the
architecture record field by field, every member's CRC-32. Then NaN and infinity are refused
unless allow_nonfinite. Every refusal is one InputError line. Try it:
    python -m scratch.train --preset student --save student.npz
    python -m torchimpl.train --preset student --load student.npz --epochs 0
"""

import math

import numpy as np

from common import archive
from common import checkpoint as files, outputs
from common.errors import InputError
from common.layout import torch_names

# ----------------------------------------------------------------------------- reading files

# common/archive.py's reader of torch.save's data.pkl, which builds descriptions, not tensors
_NUMPY_OF = {"float16": "f2", "float32": "f4", "float64": "f8", "bfloat16": "u2", "int64": "i8", "int32": "i4"}


def _array(contents, name):
    """A checked file's tensor `name` as a native-order NumPy array of its own, read only now."""
    spec = contents.specs[name]
    if contents.kind == "npz":
        dtype = np.dtype(spec.descr)
        flat = np.frombuffer(contents.member(spec), dtype, math.prod(spec.shape), spec.offset)
        return flat.reshape(spec.shape, order="F" if spec.fortran else "C").astype(dtype.newbyteorder("="), order="C")
    storage = spec.storage
    flat = np.frombuffer(contents.storage(storage), np.dtype(contents.byteorder + _NUMPY_OF[storage.dtype]))
    # torch's view: element offset, sizes and strides in elements; common/archive.py checked it fits
    view = np.lib.stride_tricks.as_strided(flat[spec.offset:], spec.shape,
                                           [s * flat.itemsize for s in spec.stride], writeable=False)
    if storage.dtype == "bfloat16":  # the top half of a float32: exact in float32
        return (view.astype(np.uint32) << 16).view(np.float32)
    return view.astype(flat.dtype.newbyteorder("="))  # a native-order copy


def read_npz(path):
    """({name: array} in the file's order, arch record or None) from a .npz file, no pickles."""
    with files.ModelFile(path) as contents:
        if contents.kind != "npz":
            raise InputError(f"{path} is not a .npz model file: it was written by torch.save")
        contents.check(None, None)
        return {name: _array(contents, name) for name in contents.specs}, contents.record


def read_torch_file(path):
    """{state_dict key: array} from a torch.save archive, in the file's order, without torch."""
    with files.ModelFile(path, match=False) as contents:
        if contents.kind != "torch":
            raise InputError(f"{path} is not a torch.save archive: it is a .npz file")
        contents.check(None, None)
        return {contents.keys[name]: _array(contents, name) for name in contents.specs}


def read(path):
    """({scratch name: array} in the file's order, arch record or None) from either twin's file;
    another module's state_dict has its layers named in the file's order. Without a model to
    size them, a file may hold at most common.archive's NO_MODEL_BYTES of tensors."""
    with files.ModelFile(path) as contents:
        contents.check(None, None)
        return {name: _array(contents, name) for name in contents.specs}, contents.record


# ----------------------------------------------------------------------------- save and load


def _layout(params, arch=None):
    """{scratch name: torch state_dict key} for these params, in state_dict order."""
    n_linear = sum(name.startswith("W") for name in params)
    return torch_names(n_linear, batchnorm="gamma1" in params, dropout=arch is not None and arch.dropout > 0)


def save(path, model):
    """Write a Network's params and batch norm buffers to `path` as .npz (whatever its name),
    atomically, with a record of its architecture (model.arch)."""
    params, arch = model.params, model.arch
    values = {**params, **model.buffers}
    arrays = {name: np.asarray(values[name]) for name in _layout(params) if name in values}
    sizes = [params["W1"].shape[1]] + [params[n].shape[0] for n in params if n.startswith("W")]
    record = files.arch_record(sizes, arch.activation, arch.batchnorm, arch.dropout,
                               arch.sigmoid_output, str(params["W1"].dtype))
    arrays[files.ARCH_KEY] = np.array(files.dumps(record))
    outputs.atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, model, allow_nonfinite=False):
    """Copy the model in `path` (either twin's format, or any Linear-only MLP's state_dict)
    into a Network's params and buffers, in place.

    Every name and shape is checked before any data is read (common.checkpoint.ModelFile):
    a file made for another architecture raises InputError naming the first tensor that
    differs. Another module's state_dict is matched by the order and shapes of its layers
    (common/layout.py), and a one-line note of the mapping goes to stderr. Values are cast to
    the arrays' dtype. model.arch is checked against the .npz's record. A tensor holding NaN
    or infinity is refused, unless allow_nonfinite, which lets it through with a note.
    """
    params, buffers, arch = model.params, model.buffers, model.arch
    keys = _layout(params, arch)
    targets = {**params, **buffers}
    expected = [(name, np.shape(targets[name])) for name in keys if name in targets]
    with files.ModelFile(path, expected) as contents:
        expected = contents.check(expected, lambda name: keys.get(name, "?"))
        files.check_arch(contents.record, arch.activation, arch.sigmoid_output, path)
        arrays = {name: _array(contents, name) for name, _ in expected}
    bad = [(name, keys.get(name, "?"), int(np.size(a) - np.isfinite(a).sum()), int(np.size(a)))
           for name, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad and not allow_nonfinite:
        raise files.nonfinite(path, bad, False)
    for name, _ in expected:
        if name in params:
            params[name][...] = arrays[name]
        else:
            value = arrays[name]
            counter = name.startswith("num_batches_tracked")
            buffers[name] = int(value) if counter else value.astype(targets[name].dtype)
    for line in ([contents.note] if contents.note else []) + ([files.nonfinite(path, bad, True)] if bad else []):
        files.note(line)
    return contents.record
