"""A fuzzer for model files: valid files of both formats, mutated at every level, loaded by both
twins. Only InputError may escape, memory stays bounded, no file on disk changes.

Mutations: byte flips, truncation, inserted bytes anywhere in the file; central directory and
end record fields (sizes, offsets, counts, CRCs) set to edge values; and a member's content
changed with its CRC-32 fixed up, so the change reaches the .npy header parser or the
unpickler instead of stopping at the CRC check (pickle opcodes swapped, bytes inserted or cut).
Hypothesis runs derandomized (conftest.py): the same examples every run. Cost on a 2-core
machine, MAX_EXAMPLES (600) each: about 7 s for scratch, 10 s for the torch twin.
"""

import hashlib
import io
import pickletools
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from common.errors import InputError
from scratch.extras import checkpoint as scratch_ckpt
from scratch.toolbox.model import Arch, Network, init_buffers, init_params
from test_model_file_safety import model_arrays, npz_bytes, torch_arrays, torch_bytes

try:  # the torch twin, for the tests marked torch; scratch's own run without it (conftest.py)
    import torch

    from torchimpl.extras import checkpoint as torch_ckpt
    from torchimpl.toolbox.model import MLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = torch_ckpt = MLP = None

SIZES = [6, 5, 3]
MAX_EXAMPLES = 600
MEMORY_BOUND = 8 << 20  # a few MiB of buffers and headers; the model itself is 53 floats
OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]
EDGES = [0, 1, 2, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


def base_files():
    """Valid files of both formats made without torch: an .npz, torch.save archives (little- and
    big-endian); saved_files adds the twins' own save() output."""
    return {"handmade.npz": npz_bytes(model_arrays()),
            "handmade.pt": torch_bytes(torch_arrays(model_arrays())),
            "big-endian.pt": torch_bytes(torch_arrays(model_arrays(">f4")), order="big")}


BASES = base_files()


def saved_files(tmp_path):
    """The twins' own save() output, added to BASES for this run."""
    files = dict(BASES)
    params = init_params(SIZES, np.random.default_rng(0))
    scratch_ckpt.save(tmp_path / "scratch.npz", Network(params, Arch(), init_buffers(params)))
    files["scratch.npz"] = (tmp_path / "scratch.npz").read_bytes()
    if torch is not None:
        torch.manual_seed(0)
        torch_ckpt.save(tmp_path / "torch.pt", MLP(SIZES))
        files["torch.pt"] = (tmp_path / "torch.pt").read_bytes()
    return files


# ----------------------------------------------------------------------------- mutations


def central_entries(content):
    """Offsets of each central directory entry and of the end record."""
    end = content.rfind(b"PK\x05\x06")
    entries, at = [], content.find(b"PK\x01\x02")
    while 0 <= at < end:
        entries.append(at)
        at = content.find(b"PK\x01\x02", at + 4)
    return entries, end


CD_FIELDS = {"crc": (16, "<I"), "compress_size": (20, "<I"), "file_size": (24, "<I"), "name_len": (28, "<H"),
             "extra_len": (30, "<H"), "header_offset": (42, "<I")}
END_FIELDS = {"entries": (10, "<H"), "cd_size": (12, "<I"), "cd_offset": (16, "<I"), "comment_len": (20, "<H")}


@st.composite
def mutated(draw, files):
    name = draw(st.sampled_from(sorted(files)))
    content = bytearray(files[name])
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "central", "end", "member"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            content[draw(st.integers(0, len(content) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del content[draw(st.integers(0, len(content) - 1)):]
    elif kind == "insert":
        at = draw(st.integers(0, len(content)))
        content[at:at] = draw(st.binary(min_size=1, max_size=16))
    elif kind in ("central", "end"):
        entries, end = central_entries(bytes(content))
        fields = CD_FIELDS if kind == "central" and entries else END_FIELDS
        start = draw(st.sampled_from(entries)) if fields is CD_FIELDS else end
        offset, fmt = fields[draw(st.sampled_from(sorted(fields)))]
        value = draw(st.sampled_from(EDGES) | st.integers(0, 2 ** 16))
        value &= 0xFFFF if fmt == "<H" else 0xFFFFFFFF
        content[start + offset:start + offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    else:
        content = bytearray(rewrite_member(draw, bytes(content)))
    return name, bytes(content)


def rewrite_member(draw, content):
    """Change one member's bytes and write the archive again with correct CRCs."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    index = draw(st.integers(0, len(members) - 1))
    member, data = members[index]
    data = bytearray(data)
    header = 128 if member.endswith(".npy") else len(data)  # .npy: aim at the header most of the time
    at = draw(st.integers(0, max(0, min(header, len(data)) - 1)))
    how = draw(st.sampled_from(["opcode", "flip", "insert", "cut", "digit"]))
    if how == "opcode" and data:
        data[at:at + 1] = draw(st.sampled_from(OPCODES))
    elif how == "flip" and data:
        data[at] ^= draw(st.integers(1, 255))
    elif how == "insert":
        data[at:at] = draw(st.sampled_from(OPCODES) | st.binary(min_size=1, max_size=8))
    elif how == "cut":
        del data[at:at + draw(st.integers(1, 16))]
    else:  # a digit in a header or a pickle: sizes, shapes, numels
        data[at:at + 1] = draw(st.sampled_from(b"0123456789")).to_bytes(1, "little")
    members[index] = (member, bytes(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for member, data in members:
            archive.writestr(member, data)
    return out.getvalue()


# ----------------------------------------------------------------------------- the property


def scratch_load(path):
    params = init_params(SIZES, np.random.default_rng(0))
    scratch_ckpt.load(path, Network(params, Arch(), init_buffers(params)), allow_nonfinite=True)


def torch_load(path):
    torch_ckpt.load(path, MLP(SIZES), allow_nonfinite=True)


def digest(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch's note on a changed PROTO
@pytest.mark.parametrize("twin", ["scratch", pytest.param("torchimpl", marks=pytest.mark.torch)])
def test_a_mutated_model_file_gives_input_error_or_loads_within_bounded_memory(twin, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("fuzz")
    files = saved_files(tmp_path_factory.mktemp("bases"))
    for name, content in files.items():
        (folder / name).write_bytes(content)
    load = scratch_load if twin == "scratch" else torch_load
    outcomes = {"loaded": 0, "refused": 0}

    @settings(max_examples=MAX_EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
    @given(mutated(files))
    def check(case):
        name, content = case
        path = folder / "mutated.bin"
        path.write_bytes(content)
        before = digest(folder)
        tracemalloc.start()
        try:
            load(path)
            outcomes["loaded"] += 1
        except InputError as err:
            assert "\n" not in str(err) and "weights_only" not in str(err), str(err)
            outcomes["refused"] += 1
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, f"{peak} bytes to load a mutation of {name}"
        assert digest(folder) == before  # nothing on disk changed: neither the file nor the valid ones
        capsys.readouterr()

    check()
    assert outcomes["refused"] > MAX_EXAMPLES // 2 and outcomes["loaded"] > 0, outcomes  # both sides exercised
