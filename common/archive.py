"""What a model file's bytes are checked for before anything in them is inflated or rebuilt.

Both twins' model files are zip archives (an .npz of .npy members; torch.save's data.pkl beside
one raw file per storage), and both twins read both, so the checks live here once, knowing only
bytes, names and shapes: no NumPy, no torch. common/checkpoint.py strings them together;
scratch/extras/checkpoint.py and torchimpl/extras/checkpoint.py turn what passed into arrays.

- The zip archive: the end record's entry count and central directory size are bounded before
  zipfile parses the directory; no duplicate names, no encryption, stored or deflated members
  only. A member is read only after its declared size (the central directory's file_size, which
  is also all that zipfile will inflate) is checked, and read whole, so its CRC-32 is verified.
- An .npy member: its header alone (shape, dtype, order) is parsed first, as a Python literal,
  and its size must be exactly the header's plus the data that shape and dtype take.
- data.pkl: a bounded size, read by an unpickler that builds only dicts, OrderedDicts and
  descriptions of tensors (StorageSpec, TensorSpec): no storage is read while unpickling. Its
  globals are an allowlist; BUILD applies only to the dicts it made; MARK nesting is bounded.
  A tensor's sizes, strides and offset are plain integers that fit inside its storage, with no
  stride 0 along a dimension of more than one element.
"""

import ast
import collections
import math
import pickle
import pickletools
import re
import struct
import zipfile
import zlib
from typing import NamedTuple

from common.errors import InputError, first_line

WIDEST = 8  # bytes per element of the widest dtype a model file holds: float64, the int64 counter
MAX_DIMS = 8
MAX_INT = 2 ** 62  # a size, stride or offset beyond this is no tensor that fits in memory
MAX_DEPTH = 32  # MARK nesting; a state_dict pickle nests 5 deep (items, tensor args, storage id)
MAX_NPY_HEADER = 65536  # NumPy itself refuses headers over 10,000 bytes by default
MAX_NAME = 1024  # central directory bytes allowed per member: its 46 fixed bytes, name and extras
NO_MODEL_TENSORS, NO_MODEL_BYTES = 4096, 2 ** 30  # ceilings of a file read without a model
FLOATS = {"f2": "float16", "f4": "float32", "f8": "float64"}  # the .npy codes of model weights
COUNTERS = {"i8": "int64", "i4": "int32"}  # batch norm's num_batches_tracked
ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int64": 8, "int32": 4, "int16": 2,
            "int8": 1, "uint8": 1, "bool": 1, "complex64": 8, "complex128": 16}
STORAGES = {"FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
            "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
            "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
            "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128"}
KINDS = {"c": "complex", "M": "datetime", "m": "timedelta", "U": "string", "S": "bytes", "V": "structured",
         "O": "Python object", "b": "boolean", "i": "integer", "u": "integer", "f": "floating-point"}
# what zipfile raises reading a damaged member (a bad CRC is a BadZipFile; a bad stream zlib.error)
READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)
ONLY_REAL = "a model file holds real floating-point tensors (float16, float32, float64; bfloat16 from torch)"


class Limits(NamedTuple):
    """How much a file for this model may hold: zip members, bytes of tensors, bytes of pickle."""

    entries: int
    tensor_bytes: int
    pickle_bytes: int


def limits(expected):
    """Limits for the model's [(name, shape)]; None (no model to load into): fixed ceilings."""
    n = NO_MODEL_TENSORS if expected is None else len(expected)
    tensor_bytes = NO_MODEL_BYTES if expected is None else WIDEST * sum(math.prod(s) for _, s in expected)
    # a torch archive: data.pkl and about 6 small records beside one storage per tensor
    return Limits(2 * n + 16, tensor_bytes, 65536 + 1024 * n)


def is_counter(name):
    """batch norm's num_batches_tracked, under scratch's name or a state_dict key."""
    return name.rpartition(".")[2].startswith("num_batches_tracked")


# ----------------------------------------------------------------------------- the zip archive


def open_zip(path, limit):
    """zipfile.ZipFile of `path` after its end record is checked against `limit` (Limits): None
    where the file is no zip archive at all. InputError for one that is damaged or too large."""
    try:
        with open(path, "rb") as f:
            end = zipfile._EndRecData(f)  # the record ZipFile itself will trust, read the same way
    except (zipfile.BadZipFile, struct.error, ValueError) as err:  # a damaged zip64 end record
        raise InputError(f"{path} is a damaged zip archive ({first_line(err)}): save the model again") from None
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror or err}") from None
    if end is None:
        return None
    count, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
    if count > limit.entries or size > limit.entries * MAX_NAME:
        raise InputError(f"{path} lists {count} archive members in {size} bytes, more than a model file for "
                         f"this network holds (at most {limit.entries}): it was made for a much larger "
                         f"network, or it is not a model file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, MemoryError) as err:
        raise InputError(f"{path} is a damaged zip archive ({first_line(err)}): save the model again") from None
    infos = archive.infolist()
    names = [info.filename for info in infos]
    problem = (f"it lists {len(infos)} members, more than {limit.entries}" if len(infos) > limit.entries
               else "it lists a member twice" if len(set(names)) != len(names) else None)
    for info in infos if problem is None else []:
        if info.flag_bits & 0x1:
            problem = f"{info.filename} is encrypted"
        elif info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            problem = f"{info.filename} uses compression method {info.compress_type}, which neither twin writes"
        elif info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            problem = f"{info.filename} is stored in {info.compress_size} bytes but declares {info.file_size}"
        if problem:
            break
    if problem:
        archive.close()
        raise InputError(f"{path} is a damaged zip archive: {problem}; save the model again")
    return archive


def read_member(archive, name, most, path):
    """The whole content of member `name`, at most `most` bytes, its CRC-32 verified."""
    info = _info(archive, name, path)
    if info.file_size > most:
        raise InputError(f"{path}: {name} declares {info.file_size} bytes, more than the {most} a model "
                         f"file for this network needs there: it is not a model file for this network")
    try:
        with archive.open(info) as f:
            data = f.read(info.file_size)
            tail = f.read(1)  # reaching the end is what makes zipfile compare the CRC-32
    except READ_ERRORS as err:
        raise InputError(f"{path}: {name} is damaged ({first_line(err)}): the file is corrupt; save the "
                         f"model again") from None
    if len(data) != info.file_size or tail:
        raise InputError(f"{path}: {name} holds {len(data)} bytes, not the {info.file_size} its archive "
                         f"entry declares: the file is truncated or damaged; save the model again")
    return data


def verify_member(archive, name, path):
    """Read a member through, 1 MiB at a time, only to verify its CRC-32 (what torch.load skips)."""
    info = _info(archive, name, path)
    try:
        with archive.open(info) as f:
            while f.read(1 << 20):
                pass
    except READ_ERRORS as err:
        raise InputError(f"{path}: {name} is damaged ({first_line(err)}): the file is corrupt; save the "
                         f"model again") from None


def read_head(archive, name, n, path):
    """The first n bytes of a member (fewer if it is shorter), for its header."""
    try:
        with archive.open(_info(archive, name, path)) as f:
            return f.read(n)
    except READ_ERRORS as err:
        raise InputError(f"{path}: {name} is damaged ({first_line(err)}): save the model again") from None


def _info(archive, name, path):
    try:
        return archive.getinfo(name)
    except KeyError:
        raise InputError(f"{path}: {name} is missing from the archive: the file is damaged") from None


# ----------------------------------------------------------------------------- .npy members


class ArraySpec(NamedTuple):
    """An .npy member, from its header: where its data starts, and what it holds."""

    member: str
    descr: str  # NumPy's type code: '<f4', '>f8', '<i8', '<U120'
    shape: tuple
    fortran: bool
    offset: int  # where the data starts inside the member
    itemsize: int


def npy_spec(archive, member, name, path):
    """ArraySpec of an .npy member, from its header alone; the member's size must be exactly the
    header's plus what the shape and dtype take. A tensor must be real floating-point (a counter
    an integer, the architecture record a string)."""
    head = read_head(archive, member, 12 + MAX_NPY_HEADER, path)
    damaged = f"{path}: {member} is not a readable .npy array"
    if head[:6] != b"\x93NUMPY" or len(head) < 10 or head[6] not in (1, 2, 3):
        raise InputError(f"{damaged} (no .npy header): the file is damaged")
    start, length = (10, struct.unpack("<H", head[8:10])[0]) if head[6] == 1 else (12, struct.unpack("<I", head[8:12])[0])
    if length > MAX_NPY_HEADER or len(head) < start + length:
        raise InputError(f"{damaged} (a header of {length} bytes): the file is damaged")
    try:
        header = ast.literal_eval(head[start:start + length].decode("utf-8" if head[6] == 3 else "latin1"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, UnicodeDecodeError):
        header = None
    if (not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}
            or not isinstance(header["fortran_order"], bool) or not isinstance(header["shape"], tuple)
            or len(header["shape"]) > MAX_DIMS or not all(_count(n) for n in header["shape"])):
        raise InputError(f"{damaged} (its header is not a shape, order and dtype): the file is damaged")
    descr, shape = header["descr"], header["shape"]
    if not isinstance(descr, str):
        raise InputError(f"{path}: tensor {name} holds structured values: {ONLY_REAL}")
    code = re.fullmatch(r"([<>|=]?)([a-zA-Z?])(\d*)(\[\w+\])?", descr)  # '<M8[s]': a datetime's unit
    kind, size = (code.group(2), code.group(3)) if code else ("?", "")
    wanted = "U" if name is None else "i" if is_counter(name) else "f"
    if kind != wanted or (kind + size not in FLOATS if wanted == "f" else kind + size not in COUNTERS
                          if wanted == "i" else not size or shape != () or int(size) > MAX_NPY_HEADER):
        what = KINDS.get(kind, "unknown")
        if name is None:
            raise InputError(f"{path}: its architecture record holds {what} values ({descr!r}), not text: "
                             f"the file is damaged")
        need = "an integer counter" if wanted == "i" else ONLY_REAL
        raise InputError(f"{path}: tensor {name} holds {what} values ({descr!r}): {need}")
    itemsize = 4 * int(size) if kind == "U" else int(size)
    nbytes = math.prod(shape) * itemsize
    declared = archive.getinfo(member).file_size
    if declared != start + length + nbytes:
        raise InputError(f"{path}: {member} holds {declared - start - length} bytes of data where its header "
                         f"({descr}, shape {shape}) says {nbytes}: the file is truncated or damaged")
    return ArraySpec(member, descr, shape, header["fortran_order"], start + length, itemsize)


def _count(n):
    return type(n) is int and 0 <= n <= MAX_INT


# ----------------------------------------------------------------------------- data.pkl


class StorageSpec(NamedTuple):
    """A storage named in data.pkl: its record data/<key>, element type and element count."""

    key: str
    dtype: str
    numel: int

    @property
    def nbytes(self):
        return self.numel * ITEMSIZE[self.dtype]


class TensorSpec(NamedTuple):
    """torch._utils._rebuild_tensor_v2's arguments, checked: a view of `storage` (in elements)."""

    storage: StorageSpec
    offset: int
    shape: tuple
    stride: tuple


class _StorageType:
    """Stands for a torch storage class inside the pickle: its element type only."""

    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2 as a description: refuses what does not fit its storage."""
    if (not isinstance(storage, StorageSpec) or not _count(storage_offset) or type(size) is not tuple
            or type(stride) is not tuple or len(size) != len(stride) or len(size) > MAX_DIMS
            or not all(map(_count, size + stride))):
        raise pickle.UnpicklingError(f"a tensor whose sizes, strides or offset are not small non-negative integers "
                                     f"(size {str(size)[:60]}, stride {str(stride)[:60]})")
    if any(s == 0 and n > 1 for n, s in zip(size, stride)):
        raise pickle.UnpicklingError(f"a tensor of shape {size} repeats one element along a dimension "
                                     f"(stride {stride}), which no saved tensor does")
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if 0 not in size else storage_offset - 1
    if last >= storage.numel:
        raise pickle.UnpicklingError(f"a tensor of shape {size} reaches past the end of its storage "
                                     f"{storage.key} ({storage.numel} elements)")
    return TensorSpec(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """torch._utils._rebuild_parameter(_with_state): an nn.Parameter is its data here."""
    if not isinstance(data, TensorSpec):
        raise pickle.UnpicklingError("a parameter that holds no tensor")
    return data


# the opcodes a pickled state_dict can use; INST, OBJ, NEWOBJ, EXT and text PERSID build objects it never holds
_REFUSED = {op.code.encode("latin1")[0] for op in pickletools.opcodes
            if op.name in ("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID",
                           "NEXT_BUFFER", "READONLY_BUFFER", "BYTEARRAY8")}


class StateDictUnpickler(pickle._Unpickler):
    """Reads data.pkl into {key: TensorSpec} without reading a storage. The pure-Python
    unpickler, so that each opcode can be judged: its globals are an allowlist (like
    torch.load(weights_only=True)), BUILD touches only dicts it made itself, MARK nests at most
    MAX_DEPTH deep."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
               ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
               ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter}
    dispatch = {op: load for op, load in pickle._Unpickler.dispatch.items() if op not in _REFUSED}

    def __init__(self, file):
        super().__init__(file)
        self.storages = {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in STORAGES:
            return _StorageType(STORAGES[name])
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a state_dict")

    def persistent_load(self, pid):
        if (type(pid) is not tuple or len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType)
                or type(pid[2]) is not str or not re.fullmatch(r"\w{1,64}", pid[2]) or type(pid[4]) is not int):
            raise pickle.UnpicklingError("a persistent id that is not a storage")
        if not _count(pid[4]):
            raise pickle.UnpicklingError(f"storage {pid[2]} claims {pid[4]} elements, which no tensor in memory has")
        spec = StorageSpec(pid[2], pid[1].dtype, pid[4])
        if self.storages.setdefault(spec.key, spec) != spec:
            raise pickle.UnpicklingError(f"storage {spec.key} is named with two types or sizes")
        return spec

    def load_mark(self):
        if len(self.metastack) >= MAX_DEPTH:
            raise pickle.UnpicklingError(f"marks nested more than {MAX_DEPTH} deep, which no state_dict needs")
        super().load_mark()

    def load_build(self):
        state, target = self.stack.pop(), self.stack[-1]
        if type(target) not in (dict, collections.OrderedDict):  # a state_dict's _metadata: not needed here
            raise pickle.UnpicklingError(f"the pickle sets the state of a {type(target).__name__}, which a "
                                         f"state_dict never does")

    dispatch[pickle.MARK[0]] = load_mark
    dispatch[pickle.BUILD[0]] = load_build
