"""Model files across the twins: each loads the other's, writes are atomic, mistakes are named."""

import io
import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import scratch.train
from common.errors import InputError
from scratch.extras import checkpoint as scratch_ckpt
from scratch.data import load_mnist
from scratch.toolbox.model import Arch, Network, forward, init_buffers, init_params, predict
from scratch.toolbox.optim import SGD

try:  # the torch twin, for the tests marked torch; scratch's own run without it (conftest.py)
    import torch
    from torch import nn

    import torchimpl.train
    from torchimpl.extras import checkpoint as torch_ckpt
    from torchimpl.toolbox.model import MLP
except ModuleNotFoundError as missing:
    if missing.name != "torch":
        raise
    torch = nn = torchimpl = torch_ckpt = MLP = None

SIZES = [784, 32, 16, 10]
TORCH_DTYPES = [torch.float32, torch.float64] if torch else [None, None]  # for a test marked torch


pytestmark = pytest.mark.usefixtures("one_thread_per_library")


@pytest.fixture(scope="module")
def mnist():
    (X, y), (X_test, y_test) = load_mnist(None, "train"), load_mnist(None, "test")
    return (X[:3000], y[:3000]), (X_test[:2000], y_test[:2000])


def scratch_model(sizes=SIZES, dtype=np.float32, batchnorm=False, seed=0):
    params = init_params(sizes, np.random.default_rng(seed), dtype, batchnorm=batchnorm)
    return params, init_buffers(params)


def network(params, buffers, arch=Arch()):
    """A scratch Network around arrays the test goes on reading."""
    return Network(params, arch, buffers)


def torch_model(sizes=SIZES, dtype=None, **options):
    torch.manual_seed(1)
    return MLP(sizes, **options).to(torch.float32 if dtype is None else dtype)


def trained_torch_model(dtype, batchnorm=True, dropout=0.0):
    """A torch model whose batch norm buffers have moved (num_batches_tracked 3)."""
    model = torch_model([6, 5, 4, 3], dtype, batchnorm=batchnorm, dropout=dropout)
    model.train()
    for _ in range(3):
        model(torch.randn(8, 6, dtype=dtype))
    return model.eval()


# ----------------------------------------------------------------------------- torch's format without torch


@pytest.mark.torch
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_scratch_reads_a_torch_state_dict_exactly_buffers_and_counter_included(dtype, tmp_path):
    model = trained_torch_model(dtype)
    torch_ckpt.save(tmp_path / "m.pt", model)
    arrays = scratch_ckpt.read_torch_file(tmp_path / "m.pt")
    state = model.state_dict()
    assert list(arrays) == list(state)
    for key, value in state.items():
        assert arrays[key].dtype == value.numpy().dtype and arrays[key].shape == tuple(value.shape), key
        assert np.array_equal(arrays[key], value.numpy()), key
    assert arrays["net.1.num_batches_tracked"].dtype == np.int64 and arrays["net.1.num_batches_tracked"] == 3


@pytest.mark.torch
def test_tensors_that_view_a_shared_storage_with_offset_and_strides_are_rebuilt(tmp_path):
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    state = {"net.0.weight": base[1:4, ::3], "net.0.bias": base[5, 2:5], "half": torch.ones(2, dtype=torch.float16),
             "net.1.num_batches_tracked": torch.tensor(7)}
    torch.save(state, tmp_path / "views.pt")
    arrays = scratch_ckpt.read_torch_file(tmp_path / "views.pt")
    for key, value in state.items():
        assert arrays[key].dtype == value.numpy().dtype and np.array_equal(arrays[key], value.numpy()), key


@pytest.mark.torch
def test_reading_a_torch_file_never_imports_torch(tmp_path):
    torch_ckpt.save(tmp_path / "m.pt", trained_torch_model(torch.float32))
    code = ("import sys; sys.modules['torch'] = None\n"
            "from scratch.extras import checkpoint\n"
            f"arrays = checkpoint.read_torch_file({str(tmp_path / 'm.pt')!r})\n"
            "assert 'torch' in sys.modules and sys.modules['torch'] is None\n"
            "print(sorted(arrays)[0], arrays['net.1.num_batches_tracked'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["net.0.bias", "3"]


@pytest.mark.torch
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    buffer = io.BytesIO()
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as archive:
        pickle.dump({"net.0.weight": Evil()}, buffer, protocol=2)
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/version", "3\n")  # what torch.load looks for beside data.pkl
        archive.writestr("archive/byteorder", "little")
    for read in (scratch_ckpt.read, torch_ckpt.read):
        with pytest.raises(InputError, match="is not a state_dict of tensors: .*system is not part of a state_dict"):
            read(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


# ----------------------------------------------------------------------------- each twin loads the other's


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_file_into_scratch_and_npz_into_torch_give_the_same_outputs(dtype, tmp_path):
    model = trained_torch_model(getattr(torch, dtype), dropout=0.1)
    torch_ckpt.save(tmp_path / "m.pt", model)
    params, buffers = scratch_model([6, 5, 4, 3], np.dtype(dtype), batchnorm=True)
    arch = Arch("relu", batchnorm=True, dropout=0.1)
    scratch_ckpt.load(tmp_path / "m.pt", network(params, buffers, arch))
    x = np.random.default_rng(2).standard_normal((9, 6)).astype(dtype)
    ours, _ = forward(params, x, arch, buffers, train=False)
    with torch.no_grad():
        theirs = model(torch.from_numpy(x)).numpy()
    assert np.allclose(ours, theirs, rtol=0, atol=1e-6 if dtype == "float32" else 1e-14)
    assert buffers["num_batches_tracked1"] == 3 and isinstance(buffers["num_batches_tracked1"], int)

    scratch_ckpt.save(tmp_path / "s.npz", network(params, buffers, arch))
    back = torch_model([6, 5, 4, 3], getattr(torch, dtype), batchnorm=True).eval()  # no dropout: same tensors
    torch_ckpt.load(tmp_path / "s.npz", back)
    for key, value in back.state_dict().items():
        original = model.state_dict()[_with_dropout(key)]
        assert value.dtype == original.dtype and torch.equal(value, original), key


def _with_dropout(key):
    """net.<i> of the batch norm model without dropout -> the same module's key with dropout."""
    _, index, field = key.split(".")
    return "net.{}.{}".format({0: 0, 1: 1, 3: 4, 4: 5, 6: 8}[int(index)], field)


@pytest.mark.torch
def test_a_bare_sequential_state_dict_as_the_chapters_save_it_loads_on_both(tmp_path):
    chapter = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.Sigmoid())
    torch.save(chapter.state_dict(), tmp_path / "mlp_student.pth")
    params, buffers = scratch_model([2, 4, 1])
    scratch_ckpt.load(tmp_path / "mlp_student.pth", network(params, buffers, Arch(sigmoid_output=True)))
    model = torch_model([2, 4, 1], sigmoid_output=True)
    torch_ckpt.load(tmp_path / "mlp_student.pth", model)
    assert np.array_equal(params["W2"], chapter[2].weight.detach().numpy())
    assert torch.equal(model.net[2].weight, chapter[2].weight)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_model_trained_on_one_twin_predicts_the_same_classes_on_the_other(dtype, mnist, tmp_path):
    (X, y), (X_test, y_test) = mnist
    X, X_test = X.astype(dtype), X_test.astype(dtype)
    # scratch trains and saves; torch loads and predicts
    rng = np.random.default_rng(0)
    params = init_params(SIZES, rng, np.dtype(dtype))
    scratch.train.fit(Network(params, rng=rng), SGD(params, lr=0.5), (X, y), (X_test, y_test), 1, 64, rng)
    scratch_ckpt.save(tmp_path / "s.npz", Network(params))
    model = torch_model(SIZES, getattr(torch, dtype)).eval()
    torch_ckpt.load(tmp_path / "s.npz", model)
    with torch.no_grad():
        torch_classes = model(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    assert np.array_equal(torch_classes, predict(params, X_test))
    # torch trains and saves; scratch loads and predicts
    other = torch_model(SIZES, getattr(torch, dtype))
    train = torch.from_numpy(X), torch.from_numpy(y)
    torchimpl.train.fit(other, torch.optim.SGD(other.parameters(), lr=0.5), train,
                        (torch.from_numpy(X_test), torch.from_numpy(y_test)), 1, 64,
                        torch.Generator().manual_seed(0))
    torch_ckpt.save(tmp_path / "t.pt", other)
    params, buffers = scratch_model(SIZES, np.dtype(dtype), seed=5)
    scratch_ckpt.load(tmp_path / "t.pt", network(params, buffers, Arch()))
    with torch.no_grad():
        expected = other.eval()(torch.from_numpy(X_test)).argmax(dim=1).numpy()
    assert np.array_equal(predict(params, X_test), expected)
    assert (expected == y_test).mean() > 0.3  # trained: three times chance after 47 steps


@pytest.mark.torch
def test_the_programs_carry_a_model_across_twins_from_the_command_line(tmp_path):
    """As a user runs them: scratch trains and saves, torchimpl loads and evaluates the same
    model; a model for another network is a one-line error with exit status 2."""
    path = tmp_path / "edges.npz"
    saved = subprocess.run([sys.executable, "-m", "scratch.train", "--preset", "edges", "--save", str(path),
                            "--json"], capture_output=True, text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    final = saved.stdout.splitlines()[-1]
    loaded = subprocess.run([sys.executable, "-m", "torchimpl.train", "--preset", "edges", "--load", str(path),
                             "--epochs", "0", "--json"], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    before, after = json.loads(final), json.loads(loaded.stdout.splitlines()[-1])
    assert after["epoch"] == 0 and (after["train_acc"], after["test_acc"]) == (before["train_acc"], before["test_acc"])
    bad = subprocess.run([sys.executable, "-m", "scratch.train", "--load", str(path), "--epochs", "0"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().endswith("error: " + f"{path}: tensor W1 (net.0.weight) has shape (16, 25) in the "
                                       "file but (128, 784) in the model; the file was made for another "
                                       "architecture: build the model with the same layer sizes and options "
                                       "(--hidden, --preset)")


@pytest.mark.torch
def test_save_and_load_flags_in_process_on_both_twins(tmp_path, capsys):
    for program, other, suffix in ((scratch.train, torchimpl.train, "npz"), (torchimpl.train, scratch.train, "pt")):
        path = tmp_path / f"student.{suffix}"
        assert program.main(["--preset", "student", "--epochs", "200", "--save", str(path)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-2] == f"saved the model to {path}"
        trained = lines[-1]
        assert other.main(["--preset", "student", "--load", str(path), "--epochs", "0"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[1].startswith("epoch 0/0  train loss ") and "train acc 1.0000  test acc -" in lines[1]
        assert lines[-1][:-2] == trained[:-2]  # the same probability, to the last digit but rounding


# ----------------------------------------------------------------------------- atomic writes


class Interrupted(Exception):
    pass


def half_then_fail(f, *args, **kwargs):
    """A writer that gets halfway, then dies (a full disk, a crash, a kill)."""
    f.write(b"PK\x03\x04 half of a zip archive")
    raise Interrupted("the writer died midway")


@pytest.mark.parametrize("twin", ["scratch", pytest.param("torchimpl", marks=pytest.mark.torch)])
@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_save_leaves_the_target_as_it_was(twin, existing, tmp_path, monkeypatch):
    target = tmp_path / "model.bin"
    if existing:
        target.write_bytes(b"the previous model")
    if twin == "scratch":
        monkeypatch.setattr(np, "savez", half_then_fail)
        save = lambda: scratch_ckpt.save(target, network(*scratch_model([4, 3, 2]), Arch()))  # noqa: E731
    else:
        monkeypatch.setattr(torch, "save", lambda obj, f, *args, **kwargs: half_then_fail(f))
        save = lambda: torch_ckpt.save(target, torch_model([4, 3, 2]))  # noqa: E731
    with pytest.raises(Interrupted):
        save()
    assert os.listdir(tmp_path) == (["model.bin"] if existing else [])  # no temporary file left either
    if existing:
        assert target.read_bytes() == b"the previous model"


def test_an_interrupt_from_the_keyboard_is_cleaned_up_too(tmp_path, monkeypatch):
    def interrupted(f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        scratch_ckpt.save(tmp_path / "m.npz", network(*scratch_model([4, 3, 2])))
    assert os.listdir(tmp_path) == []


def test_a_save_replaces_an_older_file_whole(tmp_path):
    target = tmp_path / "m.npz"
    target.write_bytes(b"old")
    params, buffers = scratch_model([4, 3, 2])
    scratch_ckpt.save(target, network(params, buffers, Arch()))
    arrays, record = scratch_ckpt.read(target)
    assert list(arrays) == ["W1", "b1", "W2", "b2"] and record["layer_sizes"] == [4, 3, 2]
    assert os.listdir(tmp_path) == ["m.npz"]


@pytest.mark.torch
def test_saving_into_a_missing_folder_is_refused_before_training(tmp_path):
    for program in (scratch.train, torchimpl.train):
        with pytest.raises(InputError, match="the folder .*nowhere does not exist"):
            program.main(["--preset", "edges", "--save", str(tmp_path / "nowhere" / "m.npz")])


# ----------------------------------------------------------------------------- clear errors


def both_loads(path, sizes=SIZES, batchnorm=False, activation="relu"):
    """Load `path` on each twin; return the two InputError messages."""
    messages = []
    params, buffers = scratch_model(sizes, batchnorm=batchnorm)
    with pytest.raises(InputError) as err:
        scratch_ckpt.load(path, network(params, buffers, Arch(activation, batchnorm)))
    messages.append(str(err.value))
    with pytest.raises(InputError) as err:
        torch_ckpt.load(path, torch_model(sizes, activation=activation, batchnorm=batchnorm))
    messages.append(str(err.value))
    return messages


@pytest.mark.torch
@pytest.mark.parametrize("saved_by", ["scratch", "torchimpl"])
@pytest.mark.parametrize("sizes, batchnorm, message", [
    ([784, 32, 10], False, "tensor W2 (net.2.weight) has shape (16, 32) in the file but (10, 32) in the model"),
    ([784, 64, 16, 10], False, "tensor W1 (net.0.weight) has shape (32, 784) in the file but (64, 784) in the model"),
    ([784, 32, 16, 10, 10], False, "the model's tensor W4 (net.6.weight) is missing from the file"),
    (SIZES, True, "the model's tensor gamma1 (net.1.weight) is missing from the file"),
])
def test_a_file_for_another_architecture_names_the_first_tensor_that_differs(saved_by, sizes, batchnorm,
                                                                             message, tmp_path):
    path = tmp_path / "m.bin"
    if saved_by == "scratch":
        scratch_ckpt.save(path, network(*scratch_model(SIZES), Arch()))
    else:
        torch_ckpt.save(path, torch_model(SIZES))
    messages = both_loads(path, sizes, batchnorm)
    assert messages[0] == messages[1]
    assert message in messages[0] and "the file was made for another architecture" in messages[0]


@pytest.mark.torch
def test_a_file_with_batch_norm_into_a_plain_model_names_the_extra_tensor(tmp_path):
    scratch_ckpt.save(tmp_path / "bn.npz", network(*scratch_model(SIZES, batchnorm=True), Arch(batchnorm=True)))
    messages = both_loads(tmp_path / "bn.npz")
    assert messages[0] == messages[1]
    assert "the file holds tensor gamma1 (32,), which the model has no place for" in messages[0]


@pytest.mark.torch
def test_a_file_trained_with_another_activation_is_refused(tmp_path):
    scratch_ckpt.save(tmp_path / "tanh.npz", network(*scratch_model(SIZES), Arch("tanh")))
    messages = both_loads(tmp_path / "tanh.npz")
    assert all("was trained with tanh activations but the model uses relu: pass --activation tanh" in m
               for m in messages)


@pytest.mark.torch
@pytest.mark.parametrize("content, message", [
    (b"", "is not a model file"),
    (b"hello, not a model", "is not a model file"),
    (pickle.dumps({"net.0.weight": [1.0]}), "is not a model file"),  # torch's pre-1.6 format: not a zip
    (None, "is not a model file"),  # a zip archive of other files
    ("whole", "holds a whole pickled module (torchimpl.toolbox.model.MLP), which cannot be loaded safely: "
              "save model.state_dict() instead (torch.save(model.state_dict(), path))"),
    ("nested", "holds a dict, not a state_dict of tensors: save model.state_dict()"),
    ("keys", "model.pt: fc1.weight (2, 2): neither a Linear (weight 2-D, bias 1-D, one per row) nor a BatchNorm1d"),
])
def test_a_file_that_is_not_a_model_file_is_a_clear_error_on_both(content, message, tmp_path):
    path = tmp_path / "model.pt"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("README.txt", "hello")
    elif content == "whole":
        torch.save(MLP([784, 32, 16, 10]), path)
    elif content == "nested":
        torch.save({"model": MLP([784, 32, 16, 10]).state_dict(), "epoch": 3}, path)
    elif content == "keys":
        torch.save({"fc1.weight": torch.zeros(2, 2)}, path)
    else:
        path.write_bytes(content)
    for message_of_twin in both_loads(path):
        assert message in message_of_twin
    assert "no such file" in both_loads(tmp_path / "absent.npz")[0]


def test_saved_files_get_the_permissions_an_ordinary_write_would(tmp_path):
    from common.outputs import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "model.bin", lambda f: f.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "model.bin").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
