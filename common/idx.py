"""The MNIST files on disk: where they are, their checksums, and the IDX header.

Both twins turn the payload into an array in their own idiom (np.frombuffer, torch.frombuffer);
what they share is finding the files, checking that each is the file it claims to be, and
reading the header. Format (after gunzip): a big-endian magic 0x0000 08 ND (0x08 = unsigned
byte, ND = number of dimensions), ND big-endian uint32 sizes, then one byte per element.

Every file is treated as possibly damaged or hostile: it is read in pieces, never past what its
header declares (plus one byte, to see whether more follows) nor past MAX_IDX_BYTES; an MNIST
file is checked against its size bound before it is read and hashed while it is read; and every
way a file can be wrong (missing, a folder, a pipe, a link loop, unreadable, not gzip, a bad
header, cut short, too long) is an InputError naming the file and what to do.
"""

import gzip
import hashlib
import importlib.resources
import io
import math
import os
import stat
import struct
import zlib
from pathlib import Path

from common.errors import InputError

# The repository keeps MNIST in data/mnist/; pyproject.toml installs that folder as the package
# mlp_twins_data (a name no other distribution uses), so a wheel carries the files too.
DATA_PACKAGE = "mlp_twins_data"
REPO_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"


def shipped_data_dir():
    """The folder of the MNIST files that ship with mlp-twins: the installed package
    mlp_twins_data (a wheel, `pip install .` or an editable install), else data/mnist/ of the
    clone that this file lies in (running from a clone with nothing installed)."""
    try:
        root = importlib.resources.files(DATA_PACKAGE)
    except ModuleNotFoundError:
        return REPO_DATA_DIR
    # A package on disk is a Path; one inside a zip file is not, and has no folder to read.
    return Path(root) if isinstance(root, Path) and root.is_dir() else REPO_DATA_DIR


DEFAULT_DATA_DIR = shipped_data_dir()

FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# SHA-256 of the original gzip files. MNIST and Fashion-MNIST share file names and format, so a
# file is accepted when it is byte for byte one of the two; anything else is corrupt.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
HOW_TO_GET = (
    "mlp-twins ships MNIST (data/mnist/ in a clone, the package mlp_twins_data once installed), "
    "or pass --data-dir with a folder holding the files; "
    "the original files are train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
)

MNIST_REMEDY = f"replace it ({HOW_TO_GET})"
IDX_REMEDY = "replace it with an intact copy of the file"

# The shape of each MNIST file, the same in Fashion-MNIST: it bounds a file's size before it is read.
SHAPES = {"train-images-idx3-ubyte.gz": (60000, 28, 28), "train-labels-idx1-ubyte.gz": (60000,),
          "t10k-images-idx3-ubyte.gz": (10000, 28, 28), "t10k-labels-idx1-ubyte.gz": (10000,)}

# The most an IDX file may hold after gunzip, header included, unless a caller asks for more:
# 2 GiB. The largest IDX data set in use, EMNIST ByClass (697,932 training images of 28 x 28,
# 547 MB), fits almost four times over; a header that declares more is damaged or hostile, and a
# reader that believed it would allocate many GiB. It is refused before anything is allocated.
MAX_IDX_BYTES = 2**31

# Files are read and gunzipped in pieces of 1 MiB: memory follows what a file really holds (as
# fast as reading it whole, measured on MNIST's 47 MB of training images).
CHUNK = 1 << 20

# O_NONBLOCK: opening a named pipe must not wait for a writer; the file is refused right after.
# O_NOCTTY: a terminal device named as a data file must not become the controlling terminal.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def idx_size(dims):
    """Bytes of an IDX file of unsigned bytes with these dimensions: magic, sizes, payload."""
    return 4 + 4 * len(dims) + math.prod(dims)


def max_gzip_size(name):
    """The largest a gzip'd MNIST or Fashion-MNIST file of this name can be on disk: the most
    deflate makes of n bytes (zlib's deflateBound, n + n/4096 + n/16384 + 13: 0.03% more), with
    0.1% and 1 KiB for the gzip header (it may carry a file name) and trailer."""
    raw = idx_size(SHAPES[name])
    return raw + raw // 1000 + 1024


def mnist_paths(data_dir, split):
    """Return (images_path, labels_path) for split 'train' or 'test', checking both are files."""
    if split not in FILES:
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    problem = _problem(data_dir, folder=True)
    if problem:
        raise InputError(f"data directory {data_dir} {problem}: {HOW_TO_GET}")
    paths = tuple(data_dir / name for name in FILES[split])
    for path in paths:
        problem = _problem(path)
        if problem:
            raise InputError(f"data file {path} {problem}: {HOW_TO_GET}")
    return paths


def _problem(path, folder=False):
    """None if path (after links) is a regular file, or a folder when `folder`; else what is wrong."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist" if folder else "is missing"
    except OSError as err:  # a link loop, a name too long, no permission to look
        return f"cannot be read ({_why(err)})"
    if folder:
        return None if stat.S_ISDIR(mode) else "is not a folder"
    return None if stat.S_ISREG(mode) else _not_regular(mode)


def _not_regular(mode):
    return "is a folder, not a file" if stat.S_ISDIR(mode) else "is not a regular file (a device, pipe or socket)"


def _why(err):
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


def open_regular(path, remedy=IDX_REMEDY):
    """Open a regular file to read; return (binary file, size in bytes). A name that is missing,
    a folder, a device or pipe, a link loop or unreadable raises InputError naming it."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; check the name, or {remedy}") from None
    except OSError as err:
        raise InputError(f"{path} cannot be opened ({_why(err)}); {remedy}") from None
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode):
        return os.fdopen(fd, "rb"), info.st_size
    os.close(fd)
    raise InputError(f"{path} {_not_regular(info.st_mode)}; {remedy}")


def read_verified(path):
    """Read a gzip'd MNIST file whose SHA-256 is one of the known ones; return the raw IDX bytes.

    A file larger than the original can be (max_gzip_size) is refused from its size, unread; the
    rest is hashed as it is read, and gunzipped only once the checksum holds, to the known size.
    """
    path = Path(path)
    if path.name not in SHAPES:
        raise InputError(f"{path} is not one of the MNIST files, so no checksum is known for it: {HOW_TO_GET}")
    limit = max_gzip_size(path.name)
    file, size = open_regular(path, MNIST_REMEDY)
    with file:
        if size > limit:
            raise InputError(f"{path} is {size} bytes, more than {path.name} of MNIST or Fashion-MNIST can "
                             f"be ({limit}): it is not the original; {MNIST_REMEDY}")
        blob, digest = _read_hashing(file, size, path)
    if not any(sums.get(path.name) == digest for sums in SHA256.values()):
        raise InputError(
            f"checksum mismatch for {path}: sha256 {digest[:16]}... is neither MNIST's nor "
            f"Fashion-MNIST's; the file is damaged or not the original, replace it ({HOW_TO_GET})"
        )
    # The original is one gzip member of known size: one zlib call (wbits 31: gzip, its CRC
    # checked) is the fastest way to it; anything else takes the careful way, with its messages.
    cap, unzip = idx_size(SHAPES[path.name]), zlib.decompressobj(wbits=31)
    try:
        raw = unzip.decompress(blob, cap + 1)
        if unzip.eof and not unzip.unused_data.strip(b"\0"):  # one member, and no more than cap
            return raw
    except zlib.error:
        pass
    return _gunzip_idx(io.BytesIO(blob), path, cap, MNIST_REMEDY)


def _read_hashing(file, size, path):
    """The file's bytes (size of them, as stat said) and their SHA-256, computed piece by piece."""
    blob, sha, got = bytearray(size), hashlib.sha256(), 0
    with memoryview(blob) as view:
        try:
            while got < size and (n := file.readinto(view[got:got + CHUNK])):
                sha.update(view[got:got + n])
                got += n
            grew = file.read(1)
        except OSError as err:
            raise InputError(f"{path} could not be read ({_why(err)}); {MNIST_REMEDY}") from None
    if grew or got < size:  # a file being written: its checksum would tell nothing
        raise InputError(f"{path} changed size while it was read: wait until nothing writes to it, or {MNIST_REMEDY}")
    return blob, sha.hexdigest()


def read_raw(path, max_bytes=MAX_IDX_BYTES):
    """Read an IDX file, gzip'd (name ends .gz) or not, without checksum; return its bytes.

    At most what the header declares is read (InputError above max_bytes, before reading the
    payload), so a damaged file or a gzip bomb costs no more memory than a good file."""
    path = Path(path)
    file, size = open_regular(path)
    with file:
        if path.suffix == ".gz":
            return _gunzip_idx(file, path, max_bytes, IDX_REMEDY)
        try:
            return _read_idx_stream(file, path, max_bytes, size)
        except OSError as err:
            raise InputError(f"{path} could not be read ({_why(err)}); {IDX_REMEDY}") from None


def _gunzip_idx(file, path, max_bytes, remedy):
    """The IDX bytes inside a gzip stream, read piece by piece up to what the header declares."""
    try:
        return _read_idx_stream(gzip.GzipFile(fileobj=file, mode="rb"), path, max_bytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # not gzip, bad CRC, cut short, bad deflate data
        raise InputError(f"{path} is not a readable gzip file ({_why(err)}): it is damaged or "
                         f"truncated; {remedy}") from None
    except OSError as err:
        raise InputError(f"{path} could not be read ({_why(err)}); {remedy}") from None


def _read_idx_stream(stream, path, max_bytes, size=None):
    """Read an IDX file from stream: the header first, then exactly the payload it declares.
    `size`, the file's size on disk (raw files), must match the header before the payload is read."""
    raw = bytearray()
    _read_up_to(stream, raw, 4)
    ndim = _check_magic(raw, path, None)
    _read_up_to(stream, raw, 4 + 4 * ndim)
    dims = _check_dims(raw, path, ndim, max_bytes)
    total = idx_size(dims)
    if size is not None and size != total:
        raise _count_error(path, dims, size - (4 + 4 * ndim))
    _read_up_to(stream, raw, total + 1)  # one byte past the payload tells "more follows" from "ends here"
    if len(raw) != total:
        raise _count_error(path, dims, "more" if len(raw) > total else len(raw) - (4 + 4 * ndim))
    return raw


def _read_up_to(stream, raw, n):
    """Append to raw from stream until it holds n bytes or the stream ends."""
    while len(raw) < n:
        piece = stream.read(min(CHUNK, n - len(raw)))
        if not piece:
            return
        raw += piece


def parse_header(raw, path, magic=None):
    """Check the IDX bytes of a whole file; return (dims, payload_offset). With `magic` given
    (IMAGE_MAGIC or LABEL_MAGIC) the file must be of that kind. InputError for a wrong magic
    number or data type, 0 or over 4 dimensions, a zero dimension, a header cut short, or a
    payload longer or shorter than the dimensions say."""
    ndim = _check_magic(raw, path, magic)
    dims = _check_dims(raw, path, ndim, None)
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(dims):
        raise _count_error(path, dims, len(raw) - offset)
    return dims, offset


# IDX data type codes (the third byte of the magic number), to say which one a file holds.
IDX_TYPES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}


def _check_magic(raw, path, magic):
    """Number of dimensions from a sound magic number (of the kind `magic`, if given)."""
    if len(raw) < 4:
        raise InputError(f"{path} is truncated: {len(raw)} bytes, too short for an IDX header; {IDX_REMEDY}")
    if raw[:2] == b"\x1f\x8b":
        raise InputError(f"{path} is gzip'd but its name does not end in .gz: rename it to end in .gz")
    (found,) = struct.unpack(">I", raw[:4])
    if magic is not None and found != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        raise InputError(f"{path} has magic number 0x{found:08x}, expected 0x{magic:08x} "
                         f"for {kind}; it is not the right IDX file: {IDX_REMEDY}")
    code, ndim = found >> 8 & 0xFF, found & 0xFF
    if found >> 16 or code not in IDX_TYPES:
        raise InputError(f"{path} has magic number 0x{found:08x}, not an IDX file of unsigned "
                         f"bytes (0x000008NN, NN the number of dimensions); {IDX_REMEDY}")
    if code != 0x08:
        raise InputError(f"{path} holds {IDX_TYPES[code]} data (IDX type 0x{code:02x}); these readers "
                         f"take unsigned bytes (0x08) only: convert the file")
    if not 1 <= ndim <= 4:
        raise InputError(f"{path} declares {ndim} dimensions; an IDX file here has 1 to 4: the header "
                         f"is damaged, {IDX_REMEDY}")
    return ndim


def _check_dims(raw, path, ndim, max_bytes):
    """The dimensions from a whole header: none zero, and no more than max_bytes in all (if given)."""
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise InputError(f"{path} is truncated inside its header ({len(raw)} of {offset} bytes); {IDX_REMEDY}")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    shape = " x ".join(map(str, dims))
    if 0 in dims:
        raise InputError(f"{path}: header says {shape}, a dimension of zero, so the file holds no data; "
                         f"it is damaged or empty, {IDX_REMEDY}")
    if max_bytes is not None and idx_size(dims) > max_bytes:
        raise InputError(f"{path}: header says {shape} = {math.prod(dims)} bytes of data, more than the "
                         f"{max_bytes} an IDX file may hold here (MAX_IDX_BYTES); the header is damaged, "
                         f"{IDX_REMEDY}, or pass a larger max_bytes for a file known to be this big")
    return dims


def _count_error(path, dims, held):
    return InputError(f"{path}: header says {' x '.join(map(str, dims))} = {math.prod(dims)} bytes of data but "
                      f"the file holds {held}; the file is truncated or its count is wrong ({IDX_REMEDY})")
