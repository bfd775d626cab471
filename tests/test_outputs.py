"""Output files: refused before any work when they cannot be written safely, written so that a
failure keeps the old file, and the temporary files of killed writers swept (common/outputs.py).

The programs run in-process through main(argv) and common.errors.run_cli, as `python -m` runs
them, so a refusal is seen exactly as a user sees it: exit status 2, one line on stderr, nothing
on stdout (no header, no epoch line: no work was done), the inputs' bytes unchanged.
"""

import errno
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common import outputs
from common.errors import InputError, run_cli
from common.idx import FILES
from in_process import assert_refused, run_program

EACH_PROGRAM = ["scratch.train", pytest.param("torchimpl.train", marks=pytest.mark.torch)]
FAST = ["--data", "student", "--loss", "bce", "--epochs", "1"]  # four rows: a run takes milliseconds


# ----------------------------------------------------------------------------- check_outputs


def test_an_empty_path_a_folder_and_a_missing_folder_are_refused(tmp_path):
    for path, phrase in [("", "--save got an empty path"), (str(tmp_path), "it is a folder"),
                         (str(tmp_path / "no" / "m.npz"), f"the folder {tmp_path / 'no'} does not exist")]:
        with pytest.raises(InputError) as err:
            outputs.check_outputs({"--save": path})
        assert phrase in str(err.value)
    outputs.check_outputs({"--save": None, "--plot": str(tmp_path / "curve.png")})  # None: not asked for
    assert os.listdir(tmp_path) == []  # the probe leaves nothing behind


def test_a_folder_that_takes_no_new_file_is_refused_by_a_real_probe():
    # /proc passes os.access for root but creates no file: only the probe can tell
    with pytest.raises(InputError, match=r"cannot write --save /proc/x.model: a file cannot be created in /proc"):
        outputs.check_outputs({"--save": "/proc/x.model"})


def test_a_name_too_long_for_its_temporary_name_is_refused_up_front(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    overhead = len(outputs.temporary_prefix("")) + outputs.RANDOM_CHARS + len(".tmp")  # all but the name
    longest = "m" * (name_max - overhead)
    outputs.check_outputs({"--save": str(tmp_path / longest)})  # fits exactly
    with pytest.raises(InputError, match=f"the name is too long.*at most {name_max - overhead} bytes"):
        outputs.check_outputs({"--save": str(tmp_path / (longest + "m"))})


def test_two_outputs_on_one_file_are_refused_however_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    for a, b in [("x", "x"), ("x", "./x"), ("x", str(tmp_path / "sub" / ".." / "x"))]:
        with pytest.raises(InputError, match=f"--save {a} and --plot {b} are the same file"):
            outputs.check_outputs({"--save": a, "--plot": b})


def test_an_output_that_is_an_input_is_refused_through_links_too(tmp_path):
    model = tmp_path / "m.npz"
    model.write_bytes(b"the model")
    (tmp_path / "hard.npz").hardlink_to(model)
    (tmp_path / "soft.npz").symlink_to(model)
    for path in (model, tmp_path / "hard.npz", tmp_path / "soft.npz"):
        with pytest.raises(InputError, match=r"--plot .* would replace .*m\.npz, which the run reads \(--load\)"):
            outputs.check_outputs({"--plot": str(path)}, {"--load": str(model)})
    with pytest.raises(InputError, match=r"which the run reads \(--data-dir\)"):
        outputs.check_outputs({"--save": str(model)}, {"--load": None, "--data-dir": [tmp_path / "a", model]})
    assert model.read_bytes() == b"the model"


# ----------------------------------------------------------------------------- atomic_write


def full_disk(f):
    f.write(b"half a model")
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_writer_failed(f):
    # what torch.save's zip writer raises on a full disk: a RuntimeError of two lines
    f.write(b"half a model")
    raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1088 vs 982\nframe #0: ...")


@pytest.mark.parametrize("writer, reason", [(full_disk, "No space left on device"),
                                            (torch_writer_failed, "unexpected pos 1088 vs 982")])
def test_a_failed_write_keeps_the_old_file_and_says_so_in_one_line(tmp_path, writer, reason):
    target = tmp_path / "m.npz"
    target.write_bytes(b"the previous model")
    with pytest.raises(InputError) as err:
        outputs.atomic_write(target, writer)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"could not write {target}: ") and reason in message
    assert message.endswith(f"{target} keeps its old content")
    assert target.read_bytes() == b"the previous model" and os.listdir(tmp_path) == ["m.npz"]
    with pytest.raises(InputError, match=f"{tmp_path / 'new.npz'} was not created$"):
        outputs.atomic_write(tmp_path / "new.npz", writer)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_the_temporary_file_has_the_documented_name_beside_its_target(tmp_path):
    seen = []
    outputs.atomic_write(tmp_path / "m.npz", lambda f: seen.extend(os.listdir(tmp_path)) or f.write(b"x"))
    assert len(seen) == 1 and seen[0].startswith(f".m.npz.mlp-twins-{os.getpid()}-") and seen[0].endswith(".tmp")
    assert os.listdir(tmp_path) == ["m.npz"]


def dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def temporary(folder, target, pid, age, random="abcd1234"):
    path = folder / f".{target}.mlp-twins-{pid}-{random}.tmp"
    path.write_bytes(b"left by a writer")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_the_next_save_removes_a_killed_writers_temporary_file_and_nothing_else(tmp_path):
    dead, hour = dead_pid(), 3600
    stale = temporary(tmp_path, "m.npz", dead, hour)  # killed an hour ago: swept
    fresh = temporary(tmp_path, "m.npz", dead, 0, "efgh5678")  # just written: maybe a writer on another machine
    alive = temporary(tmp_path, "m.npz", os.getpid(), hour)  # its writer runs (slow write)
    other = temporary(tmp_path, "other.npz", dead, hour)  # another target's
    lookalike = tmp_path / f".m.npz.mlp-twins-{dead}-abcd1234.tmp.bak"
    lookalike.write_bytes(b"not ours")
    os.utime(lookalike, (time.time() - hour,) * 2)
    outputs.atomic_write(tmp_path / "m.npz", lambda f: f.write(b"the model"))
    assert not stale.exists()
    assert fresh.exists() and alive.exists() and other.exists() and lookalike.exists()
    assert (tmp_path / "m.npz").read_bytes() == b"the model"


def test_a_write_killed_midway_leaves_the_old_file_and_a_temporary_file_the_next_save_sweeps(tmp_path):
    target = tmp_path / "m.npz"
    target.write_bytes(b"the previous model")
    code = ("import os, sys; from common import outputs\n"
            "outputs.atomic_write(sys.argv[1], lambda f: (f.write(b'half'), f.flush(), os.kill(os.getpid(), 9)))")
    killed = subprocess.run([sys.executable, "-c", code, str(target)], cwd=Path(__file__).resolve().parent.parent)
    assert killed.returncode == -9
    left = [name for name in os.listdir(tmp_path) if name != "m.npz"]
    assert len(left) == 1 and left[0].startswith(".m.npz.mlp-twins-") and target.read_bytes() == b"the previous model"
    os.utime(tmp_path / left[0], (time.time() - 2 * outputs.STALE_SECONDS,) * 2)
    outputs.atomic_write(target, lambda f: f.write(b"the model"))
    assert os.listdir(tmp_path) == ["m.npz"] and target.read_bytes() == b"the model"


# ----------------------------------------------------------------------------- the programs


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_a_plot_over_the_loaded_model_is_refused_and_the_model_kept(module, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run_program(module, [*FAST, "--save", str(model)], capsys)[0] == 0  # a real model, which loads
    trained = model.read_bytes()
    result = run_program(module, [*FAST, "--load", str(model), "--epochs", "0", "--plot", str(model)], capsys)
    assert_refused(result, f"--plot {model} would replace {model}, which the run reads (--load)")
    assert model.read_bytes() == trained


@pytest.mark.parametrize("module", EACH_PROGRAM)
@pytest.mark.parametrize("flags, phrase", [
    (["--save", "X", "--plot", "X"], "--save X and --plot X are the same file"),
    (["--save", ""], "--save got an empty path"),
    (["--save", "m" * 245], "the name is too long"),
    (["--save", "/proc/x.model"], "a file cannot be created in /proc"),
    (["--plot", "."], "it is a folder"),
    (["--save", "/dev/null"], "it is not a regular file"),  # as root, the rename would replace the device
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(module, flags, phrase, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_refused(run_program(module, flags, capsys), phrase)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_a_save_over_a_data_file_is_refused_and_the_data_kept(module, tmp_path, capsys):
    for name in [n for names in FILES.values() for n in names]:
        (tmp_path / name).write_bytes(b"data")
    target = tmp_path / FILES["train"][0]
    result = run_program(module, ["--data-dir", str(tmp_path), "--save", str(target)], capsys)
    assert_refused(result, "which the run reads (--data-dir)")
    assert target.read_bytes() == b"data"


@pytest.mark.parametrize("module", EACH_PROGRAM)
def test_a_save_that_fails_after_training_keeps_the_old_file_and_exits_2(module, tmp_path, capsys, monkeypatch):
    checkpoint = importlib.import_module(module.replace(".train", ".extras.checkpoint"))
    if module == "scratch.train":
        monkeypatch.setattr(checkpoint.np, "savez", lambda f, **arrays: full_disk(f))
    else:
        monkeypatch.setattr(checkpoint.torch, "save", lambda obj, f: torch_writer_failed(f))
    target = tmp_path / "m.model"
    target.write_bytes(b"the previous model")
    status, out, err = run_program(module, [*FAST, "--save", str(target)], capsys)
    assert status == 2 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith(f"python -m {module}: error: could not write {target}: ")
    assert err[0].endswith("keeps its old content") and "epoch 1/1" in out  # it trained, then failed to save
    assert target.read_bytes() == b"the previous model" and os.listdir(tmp_path) == ["m.model"]


@pytest.mark.torch
@pytest.mark.parametrize("flags, phrase", [
    (["--plot", "{tmp}"], "it is a folder"),
    (["--html", "{tmp}/no/page.html"], "does not exist"),
    (["--plot", "{tmp}/a.png", "--html", "{tmp}/a.png"], "--plot {tmp}/a.png and --html {tmp}/a.png are the same file"),
    (["--module", "{tmp}/net.py:Net", "--plot", "{tmp}/net.py"], "which the run reads (--module)"),
])
def test_parity_refuses_its_outputs_before_the_run(flags, phrase, tmp_path, capsys):
    (tmp_path / "net.py").write_text("the reader's module\n")
    result = run_program("parity.__main__", [f.format(tmp=tmp_path) for f in flags], capsys)
    assert_refused(result, phrase.format(tmp=tmp_path))
    assert (tmp_path / "net.py").read_text() == "the reader's module\n"
