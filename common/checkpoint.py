"""What both twins' model files share: telling the formats apart, clear mismatches.

scratch/extras/checkpoint.py writes .npz files (arrays under scratch's names W1, b1, gamma1, ...,
plus an "arch" JSON record); torchimpl/extras/checkpoint.py writes state_dicts with torch.save (a zip
archive holding data.pkl and one raw file per storage). Each twin reads both, and any other
Linear-only MLP's state_dict too, matched by the order and shapes of its layers (common/layout.py).
This module knows only names, shapes and bytes on disk: no NumPy, no torch. The twins write
their files through common/outputs.py (atomically).
"""

import io
import json
import math
import pickletools
import sys
from pathlib import Path

from common import archive as checks
from common.errors import InputError
from common.layout import is_mlp_keys, match_layers, scratch_names

ARCH_KEY = "arch"  # the .npz member holding the JSON architecture record
FORMAT = "mlp-twins model"
VERSION = 1

# ----------------------------------------------------------------------------- reading


NOT_MODEL = ("{} is not a model file: expected a .npz written by python -m scratch.train --save or a "
             "state_dict written by torch.save (python -m torchimpl.train --save)")


def open_archive(path, limit):
    """(kind, zipfile.ZipFile) of `path`, checked against `limit` (common.archive.Limits) before
    its member list is parsed; InputError for a file that is neither twin's."""
    if not Path(path).is_file():
        raise InputError(f"cannot load {path}: no such file")
    archive = checks.open_zip(path, limit)
    names = archive.namelist() if archive else []
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        return "torch", archive
    if names and all(name.endswith(".npy") for name in names):
        return "npz", archive
    if archive:
        archive.close()
    raise InputError(NOT_MODEL.format(path))


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


def pickled_module(data):
    """The class ('mymodule.Net') of a whole nn.Module that torch.save(model) pickled into the
    bytes `data` (data.pkl, or its first part), read off the pickle's opcodes without running
    them; None for anything else.

    A whole module pickles its class first (the top-level object), then its __dict__, whose keys
    every nn.Module has: _parameters, _buffers, _modules.
    """
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
    except Exception:  # noqa: BLE001 a damaged pickle (any error genops meets): the opcodes read so far still tell
        pass
    return classes[0] if classes and {"_parameters", "_buffers", "_modules"} <= strings else None


def whole_module_error(path, module):
    return InputError(f"{path} holds a whole pickled module ({module}), which cannot be loaded safely: "
                      f"save model.state_dict() instead (torch.save(model.state_dict(), path))")


class ModelFile:
    """A model file opened and checked as far as its headers go, nothing inflated yet:
    specs {scratch name: common.archive.ArraySpec (npz) or TensorSpec (torch)} in the file's
    order, keys {scratch name: the file's own name}, the .npz's record, the note of a mapping.
    match=False keeps a torch.save archive's own keys in place of scratch's names.
    Use it in a with block; check() it against the model before reading any data."""

    def __init__(self, path, expected=None, match=True):
        self.path, self.limit = Path(path), checks.limits(expected)
        self.kind, self.archive = open_archive(self.path, self.limit)
        self.record, self.note, self.byteorder, self._storages = None, None, "<", {}
        try:
            self._read_npz() if self.kind == "npz" else self._read_torch(expected, match)
        except BaseException:
            self.archive.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.archive.close()

    def _read_npz(self):
        self.specs = {member[:-len(".npy")]: checks.npy_spec(self.archive, member, member[:-len(".npy")] if
                                                             member != ARCH_KEY + ".npy" else None, self.path)
                      for member in self.archive.namelist()}
        self.keys = {name: name for name in self.specs}
        arch = self.specs.pop(ARCH_KEY, None)
        if arch is not None:
            raw = self.member(arch)[arch.offset:]
            try:
                text = raw.decode("utf-32-be" if arch.descr[0] == ">" else "utf-32-le").rstrip("\0")
            except UnicodeDecodeError:
                raise InputError(f"{self.path}: its architecture record is not text: the file is damaged") from None
            self.record = parse_arch_record(text, self.path)

    def _read_torch(self, expected, match):
        names = self.archive.namelist()
        prefix, order = torch_archive_layout(names, self.path)
        self.prefix, pickle_member = prefix, prefix + "data.pkl"
        if order:
            order = checks.read_member(self.archive, order, 16, self.path).decode("latin1").strip()
            if order not in ("little", "big"):
                raise InputError(f"{self.path}: unknown byte order {order[:20]!r}: the file is damaged")
            self.byteorder = "<" if order == "little" else ">"
        size = self.archive.getinfo(pickle_member).file_size
        if size > self.limit.pickle_bytes:  # a whole pickled module names itself early on
            module = pickled_module(checks.read_head(self.archive, pickle_member, self.limit.pickle_bytes, self.path))
            if module:
                raise whole_module_error(self.path, module)
        data = checks.read_member(self.archive, pickle_member, self.limit.pickle_bytes, self.path)
        try:
            state = checks.StateDictUnpickler(io.BytesIO(data)).load()
        except Exception as err:  # noqa: BLE001 nothing of the file's runs: any error is a damaged pickle
            module = pickled_module(data)
            if module:  # torch.save(model): the class was refused, before anything ran
                raise whole_module_error(self.path, module) from None
            why = str(err) if type(err).__name__ == "UnpicklingError" else f"a damaged pickle ({type(err).__name__})"
            raise InputError(f"{self.path} is not a state_dict of tensors: {why[:300]}") from None
        if not isinstance(state, dict) or not all(type(k) is str and isinstance(v, checks.TensorSpec)
                                                   for k, v in state.items()):
            raise InputError(f"{self.path} holds a {type(state).__name__}, not a state_dict of tensors: "
                             f"save model.state_dict()")
        for key, spec in state.items():
            wanted = checks.COUNTERS.values() if checks.is_counter(key) else (*checks.FLOATS.values(), "bfloat16")
            if spec.storage.dtype not in wanted:
                what = "an integer counter" if checks.is_counter(key) else checks.ONLY_REAL
                raise InputError(f"{self.path}: tensor {key} holds {spec.storage.dtype} values: {what}")
        names, self.note = (scratch_keys({key: spec.shape for key, spec in state.items()}, self.path, expected)
                            if match else ({key: key for key in state}, None))
        self.specs = {names[key]: spec for key, spec in state.items()}
        self.keys = {names[key]: key for key in state}

    def check(self, expected, torch_key):
        """Refuse a file whose tensors differ from the model's [(scratch name, shape)] (None: no
        model), then one whose storages are not exactly the bytes their tensors need; returns the
        tensors to copy (another module's file may lack batch norm's counter: the model keeps its)."""
        if expected is not None:
            if self.note:
                expected = [(name, shape) for name, shape in expected
                            if name in self.specs or not name.startswith("num_batches_tracked")]
            check_tensors(expected, [(name, spec.shape) for name, spec in self.specs.items()], self.path, torch_key)
        total = 0
        if self.kind == "npz":
            total = sum(math.prod(spec.shape) * spec.itemsize for spec in self.specs.values())
        for storage in {spec.storage.key: spec.storage for spec in self.specs.values()}.values() \
                if self.kind == "torch" else ():
            member, nbytes = f"{self.prefix}data/{storage.key}", storage.nbytes
            declared = checks._info(self.archive, member, self.path).file_size
            if declared != nbytes:
                raise InputError(f"{self.path}: storage {storage.key} holds {declared} bytes, not the {nbytes} "
                                 f"of its {storage.numel} {storage.dtype} elements: the file is damaged")
            total += nbytes
        if total > self.limit.tensor_bytes:
            where = "a file read without a model may hold" if expected is None else "this network's tensors take"
            raise InputError(f"{self.path}: its tensors take {total} bytes where {where} "
                             f"at most {self.limit.tensor_bytes}: save the state_dict of the network itself "
                             f"(model.state_dict())")
        return [(name, spec.shape) for name, spec in self.specs.items()] if expected is None else expected

    def member(self, spec):
        """The bytes of an .npy member (its header included), read whole: its CRC-32 verified."""
        return checks.read_member(self.archive, spec.member, self.archive.getinfo(spec.member).file_size, self.path)

    def storage(self, storage):
        """The bytes of a torch storage (common.archive.StorageSpec), read once, CRC-32 verified."""
        if storage.key not in self._storages:
            self._storages[storage.key] = checks.read_member(
                self.archive, f"{self.prefix}data/{storage.key}", storage.nbytes, self.path)
        return self._storages[storage.key]

    def verify(self):
        """Verify the CRC-32 of every member torch.load will read (it checks none itself): the
        storages of the tensors, and the small records beside data.pkl (data.pkl and byteorder were
        read whole above, their CRC-32 with them)."""
        for storage in {spec.storage.key for spec in self.specs.values()}:
            checks.verify_member(self.archive, f"{self.prefix}data/{storage}", self.path)
        read = {self.prefix + "data.pkl", self.prefix + "byteorder"}
        for info in self.archive.infolist():
            if not info.filename.startswith(self.prefix + "data/") and info.file_size <= 4096 and info.filename not in read:
                checks.verify_member(self.archive, info.filename, self.path)


def nonfinite(path, bad, allow):
    """For [(name, key, count, size)] of tensors holding NaN or infinity: InputError, or with
    `allow` the note that says they were let through."""
    listed = ", ".join(f"{name} ({key}: {count} of {size})" for name, key, count, size in bad)
    if not allow:
        return InputError(f"{path}: NaN or infinite values in {listed}: the model it was saved from had "
                          f"diverged; train it again (a lower --lr), or load it anyway with --allow-nonfinite "
                          f"(allow_nonfinite=True)")
    return f"loaded {path} with NaN or infinite values in {listed}, as allow_nonfinite asks: outputs may be NaN"


# ----------------------------------------------------------------------------- checking


def arch_record(layer_sizes, activation, batchnorm, dropout, sigmoid_output, dtype):
    """The JSON record stored beside the arrays in a .npz file."""
    return {"format": FORMAT, "version": VERSION, "layer_sizes": list(layer_sizes),
            "activation": activation, "batchnorm": bool(batchnorm), "dropout": float(dropout),
            "sigmoid_output": bool(sigmoid_output), "dtype": dtype}


# the record's fields and the types they must have (a bool is no width, and no dropout rate)
RECORD_FIELDS = {"version": lambda v: type(v) is int,
                 "layer_sizes": lambda v: type(v) is list and len(v) >= 2 and all(type(n) is int and n > 0 for n in v),
                 "activation": lambda v: v is None or type(v) is str, "batchnorm": lambda v: type(v) is bool,
                 "dropout": lambda v: type(v) in (int, float) and 0 <= v < 1,
                 "sigmoid_output": lambda v: type(v) is bool, "dtype": lambda v: type(v) is str}


def parse_arch_record(text, path):
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(f"{path}: its architecture record is not JSON: the file is damaged") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(f"{path}: its '{ARCH_KEY}' entry is not an {FORMAT} record")
    for field, fits in RECORD_FIELDS.items():
        if field in record and not fits(record[field]) or field in ("version", "layer_sizes") and field not in record:
            value = json.dumps(record.get(field))[:60]
            raise InputError(f"{path}: its architecture record has {field} {value}, which no saved model has: "
                             f"the file is damaged; save the model again")
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
