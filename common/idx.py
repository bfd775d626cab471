"""The MNIST files on disk: where they are, their checksums, and the IDX header.

Both twins turn the payload into an array in their own idiom (np.frombuffer, torch.frombuffer);
what they share is finding the files, checking that each is the file it claims to be, and
reading the header. Format (after gunzip): a big-endian magic 0x0000 08 ND (0x08 = unsigned
byte, ND = number of dimensions), ND big-endian uint32 sizes, then one byte per element.
"""

import gzip
import hashlib
import importlib.resources
import math
import struct
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


def mnist_paths(data_dir, split):
    """Return (images_path, labels_path) for split 'train' or 'test', checking both exist."""
    if split not in FILES:
        raise InputError(f"split must be 'train' or 'test', got {split!r}")
    data_dir = Path(DEFAULT_DATA_DIR if data_dir is None else data_dir)
    if not data_dir.is_dir():
        raise InputError(f"data directory {data_dir} does not exist: {HOW_TO_GET}")
    paths = tuple(data_dir / name for name in FILES[split])
    for path in paths:
        if not path.is_file():
            raise InputError(f"data file {path} is missing: {HOW_TO_GET}")
    return paths


def read_verified(path):
    """Read a gzip'd MNIST file whose SHA-256 is one of the known ones; return the raw IDX bytes."""
    path = Path(path)
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if not any(sums.get(path.name) == digest for sums in SHA256.values()):
        raise InputError(
            f"checksum mismatch for {path}: sha256 {digest[:16]}... is neither MNIST's nor "
            f"Fashion-MNIST's; the file is damaged or not the original, replace it ({HOW_TO_GET})"
        )
    return gzip.decompress(blob)


def read_raw(path):
    """Read an IDX file, gzip'd (name ends .gz) or not, without checksum; return its bytes."""
    path = Path(path)
    blob = path.read_bytes()
    if path.suffix == ".gz":
        try:
            return gzip.decompress(blob)
        except (OSError, EOFError) as err:
            raise InputError(f"{path} is not a readable gzip file ({err}); replace it") from None
    return blob


def parse_header(raw, path, magic=None):
    """Check an IDX header of unsigned bytes; return (dims, payload_offset).

    With `magic` given (IMAGE_MAGIC or LABEL_MAGIC) the file must be of that kind. Raises
    InputError for a wrong magic number, a header cut short, or a payload whose length differs
    from the product of the dimensions (a truncated file or a wrong count).
    """
    if len(raw) < 4:
        raise InputError(f"{path} is truncated: {len(raw)} bytes, too short for an IDX header")
    (found,) = struct.unpack(">I", raw[:4])
    if magic is not None and found != magic:
        kind = "images" if magic == IMAGE_MAGIC else "labels"
        raise InputError(f"{path} has magic number 0x{found:08x}, expected 0x{magic:08x} "
                         f"for {kind}; it is not the right IDX file")
    if found >> 8 != 0x08 or not 1 <= found & 0xFF <= 4:
        raise InputError(f"{path} has magic number 0x{found:08x}, not an IDX file of unsigned "
                         f"bytes (0x000008NN, NN the number of dimensions)")
    ndim = found & 0xFF
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise InputError(f"{path} is truncated inside its header ({len(raw)} of {offset} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:offset])
    expected = math.prod(dims)
    if len(raw) - offset != expected:
        raise InputError(
            f"{path}: header says {' x '.join(map(str, dims))} = {expected} bytes of data but the "
            f"file holds {len(raw) - offset}; the file is truncated or its count is wrong"
        )
    return dims, offset
