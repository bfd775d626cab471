"""Save and load the NumPy twin's model: .npz files, and torch.save's files read without torch.

Twin: torchimpl/extras/checkpoint.py. save() writes the parameters and batch norm buffers under
scratch's names (W1, b1, gamma1, beta1, running_mean1, ...), in state_dict order, plus an
"arch" JSON record (layer sizes, activation, options, dtype), atomically. load() reads either
twin's file, or any Linear-only MLP's state_dict (matched by the order and shapes of its layers,
with a note of the mapping on stderr), into existing arrays, checking every name and shape first.

A torch.save file is a zip archive: <prefix>/data.pkl is a pickle of the state_dict whose
tensors are calls to torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) and
whose storages are persistent ids ('storage', torch.FloatStorage, key, location, numel)
pointing at the raw little-endian bytes in <prefix>/data/<key>. TorchUnpickler rebuilds that
with NumPy and refuses every other global, so loading runs no code from the file. Try it:
    python -m scratch.train --preset student --save student.npz
    python -m torchimpl.train --preset student --load student.npz --epochs 0
"""

import collections
import pickle
import zipfile

import numpy as np

from common import checkpoint as files
from common.errors import InputError
from common.layout import torch_names

# ----------------------------------------------------------------------------- torch's format without torch

# torch.<Name>Storage -> element type; torch.save writes typed storages for tensors.
STORAGE_DTYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
                  "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2",
                  "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
                  "UntypedStorage": "u1"}
TORCH_DTYPES = {"float32": "f4", "float64": "f8", "float16": "f2", "int64": "i8", "int32": "i4",
                "int16": "i2", "int8": "i1", "uint8": "u1", "bool": "?"}


class _StorageType:
    """Stands for a torch storage class inside the pickle; holds the element dtype."""

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """torch._utils._rebuild_tensor_v2 in NumPy: the view of `storage` with torch's element
    offset, sizes and strides (in elements), copied out. Bounds are checked first, because
    as_strided would otherwise read past the buffer."""
    size, stride = tuple(size), tuple(stride)
    if (not isinstance(storage, np.ndarray) or len(size) != len(stride) or storage_offset < 0
            or any(n < 0 for n in size) or any(s < 0 for s in stride)):
        raise pickle.UnpicklingError("a tensor with an impossible layout")
    if 0 in size:
        return np.empty(size, storage.dtype.newbyteorder("="))
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], size,
                                           [s * storage.itemsize for s in stride], writeable=False)
    return view.astype(storage.dtype.newbyteorder("="))  # a native-order copy


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """torch._utils._rebuild_parameter: an nn.Parameter is its data here."""
    return data


class TorchUnpickler(pickle.Unpickler):
    """Reads data.pkl of a torch.save archive into {key: ndarray}, allowing only the globals a
    state_dict needs (an allowlist, like torch.load(weights_only=True))."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
               ("torch._utils", "_rebuild_parameter"): _rebuild_parameter}

    def __init__(self, file, archive, prefix, byteorder):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder, self.storages = archive, prefix, byteorder, {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(name, np.dtype(self.byteorder + STORAGE_DTYPES[name]))
        if module == "torch" and name in TORCH_DTYPES:
            return np.dtype(TORCH_DTYPES[name])
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a state_dict")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key} is missing from the archive") from None
            if len(raw) != numel * storage_type.dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, not "
                                             f"{numel} x {storage_type.dtype.itemsize}")
            self.storages[key] = np.frombuffer(raw, storage_type.dtype)
        return self.storages[key]


# ----------------------------------------------------------------------------- reading files


def read_npz(path):
    """({name: array} in the file's order, arch record or None) from a .npz file, no pickles."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise InputError(f"{path} is not a readable .npz model file: {err}") from None
    text = arrays.pop(files.ARCH_KEY, None)
    return arrays, None if text is None else files.parse_arch_record(str(text), path)


def read_torch_file(path):
    """{state_dict key: array} from a torch.save archive, in the file's order, without torch."""
    try:
        with zipfile.ZipFile(path) as archive:
            prefix, order_member = files.torch_archive_layout(archive.namelist(), path)
            order = archive.read(order_member).decode().strip() if order_member else "little"
            if order not in ("little", "big"):
                raise InputError(f"{path}: unknown byte order {order!r}")
            with archive.open(prefix + "data.pkl") as f:
                state = TorchUnpickler(f, archive, prefix, "<" if order == "little" else ">").load()
    except InputError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, OSError) as err:
        module = files.pickled_module(path) if isinstance(err, pickle.UnpicklingError) else None
        if module:  # torch.save(model): the class was refused above, before anything ran
            raise files.whole_module_error(path, module) from None
        raise InputError(f"{path} is not a state_dict of tensors: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                               for k, v in state.items()):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors: "
                         f"save model.state_dict()")
    return dict(state)


def read(path):
    """({scratch name: array} in the file's order, arch record or None) from either twin's file;
    another module's state_dict has its layers named in the file's order."""
    arrays, record, _ = _read(path)
    return arrays, record


def _read(path, expected=None):
    """read(), matching another module's state_dict to the model's [(name, shape)], and its note."""
    if files.file_kind(path) == "npz":
        return (*read_npz(path), None)
    state = read_torch_file(path)
    names, note = files.scratch_keys({key: value.shape for key, value in state.items()}, path, expected)
    return {names[key]: value for key, value in state.items()}, None, note


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
    files.atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path, model):
    """Copy the model in `path` (either twin's format, or any Linear-only MLP's state_dict)
    into a Network's params and buffers, in place.

    Every name and shape is checked before anything is copied: a file made for another
    architecture raises InputError naming the first tensor that differs. Another module's
    state_dict is matched by the order and shapes of its layers (common/layout.py), and a
    one-line note of the mapping goes to stderr. Values are cast to the arrays' dtype.
    model.arch is checked against the .npz's record.
    """
    params, buffers, arch = model.params, model.buffers, model.arch
    keys = _layout(params, arch)
    targets = {**params, **buffers}
    expected = [(name, np.shape(targets[name])) for name in keys if name in targets]
    arrays, record, note = _read(path, expected)
    if note:  # another module's file: a batch norm's counter may be absent (kept as it is)
        expected = [(name, shape) for name, shape in expected
                    if name in arrays or not name.startswith("num_batches_tracked")]
    files.check_tensors(expected, [(name, a.shape) for name, a in arrays.items()], path,
                        lambda name: keys.get(name, "?"))
    files.check_arch(record, arch.activation, arch.sigmoid_output, path)
    for name, _ in expected:
        if name in params:
            params[name][...] = arrays[name]
        else:
            value = arrays[name]
            counter = name.startswith("num_batches_tracked")
            buffers[name] = int(value) if counter else value.astype(targets[name].dtype)
    if note:
        files.note(note)
    return record
