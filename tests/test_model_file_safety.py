"""Hostile and damaged model files: each twin's load() refuses them in one line (InputError),
inflates nothing the model does not need, runs nothing and changes nothing in the process.

The files are made here byte by byte (a zip writer, .npy headers, pickle opcodes), so the
scratch side runs without torch; the torch twin's loads are marked torch.
"""

import io
import json
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from common import archive
from common.errors import InputError
from scratch.extras import checkpoint as scratch_ckpt
from scratch.toolbox.model import Arch, Network, init_buffers, init_params

try:  # the torch twin, for the tests marked torch; scratch's own run without it (conftest.py)
    import torch

    from torchimpl.extras import checkpoint as torch_ckpt
    from torchimpl.toolbox.model import MLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = torch_ckpt = MLP = None

ROOT = Path(__file__).resolve().parent.parent
SIZES = [6, 5, 3]
KEYS = {"W1": "net.0.weight", "b1": "net.0.bias", "W2": "net.2.weight", "b2": "net.2.bias"}
TWINS = ["scratch", pytest.param("torchimpl", marks=pytest.mark.torch)]
GiB = 1 << 30
# What a refused load may allocate: the headers, data.pkl and zipfile's own buffers, never the
# gigabyte a bomb declares. The model itself is 53 floats; zipfile reads in blocks of up to 1 MiB.
MEMORY_BOUND = 8 << 20


# ----------------------------------------------------------------------------- making files byte by byte


class Deflated:
    """A member's already-compressed bytes with the size and CRC-32 they inflate to."""

    def __init__(self, data, size, crc):
        self.data, self.size, self.crc = data, size, crc


def zip_bytes(members):
    """A zip archive of [(name, bytes or Deflated)], written by hand so sizes can be anything."""
    out, central = io.BytesIO(), b""
    for name, content in members:
        name = name.encode()
        if isinstance(content, Deflated):
            method, data, size, crc = 8, content.data, content.size, content.crc
        else:
            method, data, size, crc = 0, content, len(content), zlib.crc32(content)
        offset = out.tell()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data), size,
                              len(name), 0) + name + data)
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(data),
                               size, len(name), 0, 0, 0, 0, 0, offset) + name
    start = out.tell()
    out.write(central + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                                    start, 0))
    return out.getvalue()


def zeros_deflated(size, prefix=b""):
    """A deflate stream of `prefix` then `size` zero bytes (a multiple of 1 MiB), in about
    size / 1000 bytes: 1 MiB of zeros compressed after a full flush repeats byte for byte."""
    block, c = 1 << 20, zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    chunk = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = zlib.crc32(prefix), bytes(block)
    for _ in range(size // block):
        crc = zlib.crc32(zeros, crc)
    return Deflated(head + chunk * (size // block) + c.flush(), len(prefix) + size, crc)


def npy_header(descr, shape, fortran=False):
    """An .npy version 1.0 header, as NumPy writes it, for any descr and shape."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def model_arrays(dtype="<f4", seed=0):
    rng = np.random.default_rng(seed)
    shapes = {"W1": (5, 6), "b1": (5,), "W2": (3, 5), "b2": (3,)}
    return {name: rng.standard_normal(shape).astype(dtype) for name, shape in shapes.items()}


def npz_bytes(arrays, extra=()):
    """An .npz of {name: array or raw .npy bytes}, plus [(member, content)]."""
    return zip_bytes([(f"{name}.npy", a if isinstance(a, (bytes, Deflated)) else npy(a))
                      for name, a in arrays.items()] + list(extra))


def unicode(text):
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()


def integer(n):
    if 0 <= n < 256:
        return b"K" + bytes([n])
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: any size, 2**63 included


def tup(items):
    return b"(" + b"".join(integer(i) for i in items) + b"t"


def tensor_opcodes(storage_type, key, numel, offset, size, stride):
    """The opcodes torch.save writes for one tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""
    storage = b"((" + unicode("storage") + f"ctorch\n{storage_type}\n".encode() + unicode(key) + unicode("cpu")
    storage += integer(numel) + b"tQ"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" + storage + integer(offset) + tup(size) + tup(stride)
            + b"\x89ccollections\nOrderedDict\n)RtR")


def state_pickle(tensors):
    """A protocol-2 pickle of {key: tensor_opcodes arguments} as a dict, the way torch.save writes it."""
    body = b"".join(unicode(key) + tensor_opcodes(*args) for key, args in tensors.items())
    return b"\x80\x02}(" + body + b"u."


def torch_bytes(arrays, order="little", pickled=None, storages=None):
    """A torch.save archive of {state_dict key: float32 array} (contiguous, one storage each)."""
    tensors, data = {}, {}
    for index, (key, a) in enumerate(arrays.items()):
        stride = tuple(s // a.itemsize for s in a.strides)
        tensors[key] = ({"f4": "FloatStorage", "f8": "DoubleStorage"}[a.dtype.str[1:]], str(index), a.size, 0,
                        a.shape, stride)
        data[str(index)] = a.astype(a.dtype.newbyteorder("<" if order == "little" else ">")).tobytes()
    data.update(storages or {})
    return zip_bytes([("archive/data.pkl", state_pickle(tensors) if pickled is None else pickled),
                      ("archive/byteorder", order.encode()), ("archive/version", b"3\n")]
                     + [(f"archive/data/{key}", raw) for key, raw in data.items()])


def torch_arrays(arrays):
    return {KEYS[name]: a for name, a in arrays.items()}


# ----------------------------------------------------------------------------- loading


def load(twin, path, **options):
    """Load `path` into a fresh 6-5-3 model of `twin`; its {scratch name: ndarray} afterwards."""
    if twin == "scratch":
        params = init_params(SIZES, np.random.default_rng(0))
        scratch_ckpt.load(path, Network(params, Arch(), init_buffers(params)), **options)
        return params
    torch.manual_seed(0)
    model = MLP(SIZES)
    torch_ckpt.load(path, model, **options)
    return {name: model.state_dict()[key].numpy() for name, key in KEYS.items()}


def refusal(twin, path):
    with pytest.raises(InputError) as err:
        load(twin, path)
    message = str(err.value)
    assert "\n" not in message and "weights_only" not in message and "will likely succeed" not in message
    return message


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("twin", TWINS)
def test_handmade_files_of_both_formats_load_exactly_so_the_refusals_below_mean_something(twin, tmp_path):
    arrays = model_arrays()
    for name, content in (("m.npz", npz_bytes(arrays)), ("m.pt", torch_bytes(torch_arrays(arrays))),
                          ("big.pt", torch_bytes(torch_arrays(model_arrays(">f4")), order="big")),
                          ("big.npz", npz_bytes(model_arrays(">f8")))):
        loaded = load(twin, write(tmp_path, name, content))
        for key, value in arrays.items():
            assert np.array_equal(loaded[key], value.astype(np.float32)), (name, key)


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("fmt", ["npz", "pt"])
def test_a_flipped_byte_inside_a_tensors_data_is_refused_by_its_crc(twin, fmt, tmp_path):
    arrays = model_arrays()
    content = bytearray(npz_bytes(arrays) if fmt == "npz" else torch_bytes(torch_arrays(arrays)))
    with zipfile.ZipFile(io.BytesIO(bytes(content))) as z:
        info = z.getinfo("W2.npy" if fmt == "npz" else "archive/data/2")
    content[info.header_offset + 30 + len(info.filename) + info.file_size - 3] ^= 0x10  # inside W2's last float
    message = refusal(twin, write(tmp_path, f"m.{fmt}", bytes(content)))
    assert "is damaged (Bad CRC-32" in message and "save the model again" in message


def _with_zip64_locator(content):
    """A zip64 end locator before the end record, pointing at a disk that does not exist."""
    end = content.rfind(b"PK\x05\x06")
    return content[:end] + struct.pack("<4sIQI", b"PK\x06\x07", 5, 10 ** 6, 7) + content[end:]


ZIP64_LOCATOR_OF_NOTHING = _with_zip64_locator(npz_bytes(model_arrays()))


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("content, message", [
    (npz_bytes({**model_arrays(), "W1": npy_header("<f4", (5, 6)) + bytes(100)}), "W1.npy holds 100 bytes of data where"),
    (npz_bytes({**model_arrays(), "W1": b"\x93NUMPY\x01\x00\xff\x00{'descr': '<f4', 'fortran_order'"}),
     "W1.npy is not a readable .npy array"),
    (npz_bytes({**model_arrays(), "W1": npy_header("<f4", (5, "6")) + bytes(120)}),
     "its header is not a shape, order and dtype"),
    (torch_bytes(torch_arrays(model_arrays()), storages={"0": bytes(64)}),
     "storage 0 holds 64 bytes, not the 120 of its 30 float32 elements"),
    (torch_bytes(torch_arrays(model_arrays()), pickled=state_pickle({})[:-1]), "is not a state_dict of tensors"),
    (torch_bytes(torch_arrays(model_arrays()), order="middle"), "unknown byte order 'middle'"),
    (ZIP64_LOCATOR_OF_NOTHING, "is a damaged zip archive (zipfiles that span multiple disks are not supported)"),
], ids=["npy-too-short", "npy-header-cut", "npy-shape-text", "storage-too-short", "pickle-cut", "byteorder",
        "zip64-locator"])
def test_damaged_headers_sizes_and_records_are_refused_in_one_line(twin, content, message, tmp_path):
    assert message in refusal(twin, write(tmp_path, "m.bin", content))


# ----------------------------------------------------------------------------- unbounded memory


def peak_of(call):
    """The largest amount of memory Python allocated (NumPy's arrays included) while call() ran."""
    tracemalloc.start()
    try:
        call()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Files of about 1-2 MB that declare (and would inflate to) 1 GiB or more, each for the 6-5-3 model."""
    folder, arrays = tmp_path_factory.mktemp("bombs"), model_arrays()
    gib = zeros_deflated(GiB)
    w1 = zeros_deflated(GiB, npy_header("<f4", (GiB // 4,)))  # an .npy of 2**28 float32 zeros
    views = dict(torch_arrays(arrays))
    tensors = {key: ("FloatStorage", str(i), a.size, 0, a.shape, (a.shape[1], 1) if a.ndim == 2 else (1,))
               for i, (key, a) in enumerate(views.items())}
    tensors["net.0.weight"] = ("FloatStorage", "0", GiB // 4, 0, (5, 6), (6, 1))  # a view of 1 GiB of storage
    raw = {str(i): a.tobytes() for i, a in enumerate(views.values())}
    files = {
        "npz-shape": npz_bytes({**arrays, "W1": w1}),
        "npz-extra-member": npz_bytes(arrays, [("junk.npy", w1)]),
        "pt-storage": zip_bytes([("archive/data.pkl", state_pickle(tensors)), ("archive/byteorder", b"little"),
                                 ("archive/version", b"3\n"), ("archive/data/0", gib)]
                                + [(f"archive/data/{k}", v) for k, v in raw.items() if k != "0"]),
        "pt-stride-0": torch_bytes({}, pickled=state_pickle({**tensors, "net.0.weight": (
            "FloatStorage", "0", 6, 0, (2 ** 28, 6), (0, 1))}), storages={k: v for k, v in raw.items() if k != "0"}
            | {"0": bytes(24)}),
        "pt-2**63": torch_bytes({}, pickled=state_pickle({**tensors, "net.0.weight": (
            "FloatStorage", "0", 2 ** 63, 0, (2 ** 63,), (1,))}), storages=raw),
        "pt-size-2**63": torch_bytes({}, pickled=state_pickle({**tensors, "net.0.weight": (
            "FloatStorage", "0", 30, 0, (2 ** 63, 1), (1, 1))}), storages=raw),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}.{'npz' if name.startswith('npz') else 'pt'}"
        paths[name].write_bytes(content)
        assert len(content) < 3 << 20
    return paths


BOMB_MESSAGES = {
    "npz-shape": "tensor W1 (net.0.weight) has shape (268435456,) in the file but (5, 6) in the model",
    "npz-extra-member": "the file holds tensor junk (268435456,), which the model has no place for",
    "pt-storage": "its tensors take 1073741916 bytes where this network's tensors take at most 424",
    "pt-stride-0": "repeats one element along a dimension (stride (0, 1))",
    "pt-2**63": "is not a state_dict of tensors: storage 0 claims 9223372036854775808 elements",
    "pt-size-2**63": "not small non-negative integers (size (9223372036854775808, 1), stride (1, 1))",
}


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("bomb", list(BOMB_MESSAGES))
def test_a_bomb_of_a_few_megabytes_is_refused_before_anything_is_inflated(twin, bomb, bombs):
    messages = []
    peak = peak_of(lambda: messages.append(refusal(twin, bombs[bomb])))
    assert BOMB_MESSAGES[bomb] in messages[0]
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated to refuse {bomb}"


@pytest.mark.parametrize("twin", TWINS)
def test_reading_a_bomb_without_a_model_is_bounded_too(twin, bombs):
    read = scratch_ckpt.read if twin == "scratch" else torch_ckpt.read
    def refused(path):
        with pytest.raises(InputError, match="where a file read without a model may hold at most 1073741824"):
            read(path)

    for bomb in ("npz-shape", "npz-extra-member", "pt-storage"):
        assert peak_of(lambda: refused(bombs[bomb])) < MEMORY_BOUND, bomb  # noqa: B023 called at once


@pytest.mark.torch
def test_the_torch_twin_refuses_every_bomb_within_a_few_megabytes_of_resident_memory(bombs, tmp_path):
    """tracemalloc does not see torch's own allocations; the peak resident size of a process does."""
    good = write(tmp_path, "good.pt", torch_bytes(torch_arrays(model_arrays())))
    code = ("import resource, sys, torch\n"
            "from torchimpl.extras import checkpoint\n"
            "from torchimpl.toolbox.model import MLP\n"
            "checkpoint.load(sys.argv[1], MLP([6, 5, 3]))\n"  # torch's lazy start-up happens here
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "for path in sys.argv[2:]:\n"
            "    try:\n"
            "        checkpoint.load(path, MLP([6, 5, 3]))\n"
            "    except ValueError as err:\n"
            "        print('refused', path)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n")
    result = subprocess.run([sys.executable, "-c", code, str(good), *map(str, bombs.values())], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"refused {path}" for path in bombs.values()]
    assert int(lines[-1]) < 64 << 20  # resident growth in bytes; each bomb would take 1 GiB


# ----------------------------------------------------------------------------- dtypes, records, pickles


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("descr, what", [
    ("<c8", "complex values ('<c8')"), ("<M8[s]", "datetime values ('<M8[s]')"),
    ("<m8[s]", "timedelta values ('<m8[s]')"), ("<U3", "string values ('<U3')"), ("|S4", "bytes values ('|S4')"),
    ("<i4", "integer values ('<i4')"), ("|b1", "boolean values ('|b1')"), ("|O", "Python object values ('|O')"),
    ([("a", "<f4")], "structured values"), ("|V4", "structured values ('|V4')"),
])
def test_a_tensor_of_another_kind_than_real_floats_is_refused_naming_it(twin, descr, what, tmp_path):
    itemsize = np.dtype(descr).itemsize
    content = npz_bytes({**model_arrays(), "W1": npy_header(descr, (5, 6)) + bytes(30 * itemsize)})
    message = refusal(twin, write(tmp_path, "m.npz", content))
    assert f"tensor W1 holds {what}" in message and "real floating-point tensors" in message


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("storage", ["IntStorage", "ComplexFloatStorage", "BoolStorage"])
def test_a_torch_tensor_of_another_kind_than_real_floats_is_refused_naming_it(twin, storage, tmp_path):
    tensors = {key: ("FloatStorage", str(i), a.size, 0, a.shape, (a.shape[1], 1) if a.ndim == 2 else (1,))
               for i, (key, a) in enumerate(torch_arrays(model_arrays()).items())}
    tensors["net.0.bias"] = (storage, "1", 5, 0, (5,), (1,))
    content = torch_bytes(torch_arrays(model_arrays()), pickled=state_pickle(tensors))
    assert "tensor net.0.bias holds " in refusal(twin, write(tmp_path, "m.pt", content))


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("field, value", [("layer_sizes", 5), ("layer_sizes", None), ("layer_sizes", "6-5-3"),
                                          ("layer_sizes", [6, True, 3]), ("activation", 3), ("sigmoid_output", "no"),
                                          ("dropout", "x"), ("version", None)])
def test_an_architecture_record_with_a_field_of_the_wrong_type_is_refused(twin, field, value, tmp_path):
    record = {"format": "mlp-twins model", "version": 1, "layer_sizes": SIZES, "activation": "relu",
              "batchnorm": False, "dropout": 0.0, "sigmoid_output": False, "dtype": "float32", field: value}
    content = npz_bytes({**model_arrays(), "arch": np.array(json.dumps(record))})
    message = refusal(twin, write(tmp_path, "m.npz", content))
    assert f"its architecture record has {field} {json.dumps(value)}, which no saved model has" in message


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("pickled, message", [
    (b"\x80\x02" + b"(" * 2_000_000 + b".", "data.pkl declares 2000003 bytes, more than the"),
    (b"\x80\x02" + b"(" * 40 + b".", "marks nested more than 32 deep"),
    (b"\x80\x02" + b"]" * 30000 + b"a" * 29999 + b".", "holds a list, not a state_dict"),
    (b"\x80\x02ccollections\nOrderedDict\n)R(S'x'\nS'y'\nio\n.", "is not a state_dict of tensors"),  # INST
    (b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueR.", "posix.system is not part of a state_dict"),
    (b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x8c\x06getcwd\x93)R.", "os.getcwd is not part of"),
    (b"\x80\x02}(X\x01\x00\x00\x00aQu.", "is not a state_dict of tensors"),  # a persistent id of nothing
])
def test_hostile_pickles_are_refused_in_one_line_without_running_anything(twin, pickled, message, tmp_path):
    assert message in refusal(twin, write(tmp_path, "m.pt", torch_bytes({}, pickled=pickled)))


def test_build_cannot_change_the_functions_the_unpickler_hands_out(tmp_path):
    """BUILD on an allowlisted function would set its attributes for the rest of the process."""
    target = archive._rebuild_tensor_v2
    defaults, attributes = target.__defaults__, dict(target.__dict__)
    for state in (b"N}X\x0c\x00\x00\x00__defaults__(K\x01K\x02K\x03tsb", b"}X\x01\x00\x00\x00xK\x01sb"):  # slots, dict
        pickled = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n" + (b"(" + state[:-1] + b"tb" if state[0:1] == b"N"
                                                                     else state) + b"0}."
        with pytest.raises(InputError, match="sets the state of a function, which a state_dict never does"):
            scratch_ckpt.read(write(tmp_path, "m.pt", torch_bytes({}, pickled=pickled)))
        assert target.__defaults__ == defaults and target.__dict__ == attributes
    assert not hasattr(scratch_ckpt, "_rebuild_tensor_v2")  # scratch hands out common.archive's, checked here


# ----------------------------------------------------------------------------- NaN and infinity


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("fmt", ["npz", "pt"])
def test_nan_and_infinite_weights_are_refused_unless_allowed_with_a_note(twin, fmt, tmp_path, capsys):
    arrays = model_arrays()
    arrays["W2"][1, 2], arrays["b1"][0], arrays["b1"][3] = np.nan, np.inf, -np.inf
    path = write(tmp_path, f"m.{fmt}", npz_bytes(arrays) if fmt == "npz" else torch_bytes(torch_arrays(arrays)))
    assert refusal(twin, path) == (
        f"{path}: NaN or infinite values in b1 (net.0.bias: 2 of 5), W2 (net.2.weight: 1 of 15): the model it was "
        "saved from had diverged; train it again (a lower --lr), or load it anyway with --allow-nonfinite "
        "(allow_nonfinite=True)")
    capsys.readouterr()
    loaded = load(twin, path, allow_nonfinite=True)
    assert np.isnan(loaded["W2"][1, 2]) and loaded["b1"][3] == -np.inf
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"loaded {path} with NaN or infinite values in b1 (net.0.bias: 2 of 5), W2 (net.2.weight: 1 of 15), "
        "as allow_nonfinite asks: outputs may be NaN")


@pytest.mark.torch
def test_torchs_advice_to_load_without_weights_only_never_reaches_the_user(tmp_path):
    path = write(tmp_path, "m.pt", torch_bytes({}, pickled=b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueR."))
    with pytest.raises(pickle.UnpicklingError) as err:
        torch.load(path, weights_only=True)
    assert "will likely succeed" in str(err.value)  # what torch itself says
    reason = torch_ckpt._reason(err.value)
    assert reason == "posix.system is not part of a state_dict"
    assert "weights_only" not in torch_ckpt._reason(RuntimeError("Weights only load failed.\nRe-running `torch.load` "
                                                                 "with `weights_only` set to `False` will likely "
                                                                 "succeed\nWeightsUnpickler error: Unsupported "
                                                                 "operand 149"))


@pytest.mark.parametrize("twin", TWINS)
def test_the_programs_refuse_nan_weights_in_one_line_with_exit_2(twin, tmp_path):
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in (
        ("W1", (128, 784)), ("b1", (128,)), ("W2", (64, 128)), ("b2", (64,)), ("W3", (10, 64)), ("b3", (10,)))}
    arrays["b3"][4] = np.nan
    path = write(tmp_path, "diverged.npz", npz_bytes(arrays))
    result = subprocess.run([sys.executable, "-m", f"{twin}.train", "--load", str(path), "--epochs", "0", "--limit",
                             "100"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"python -m {twin}.train: error: {path}: NaN or infinite values in b3 "
                                          "(net.4.bias: 1 of 10): the model it was saved from had diverged; train it "
                                          "again (a lower --lr), or load it anyway with --allow-nonfinite "
                                          "(allow_nonfinite=True)"]
