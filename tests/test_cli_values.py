"""Every bad command-line value is one line on stderr and exit status 2, on every program, before
any work: numbers out of range (common.cli's types: one seed range, one bound for counts and
real numbers on every program), networks too large for the machine, devices torch cannot train
on. The programs run in-process through main(argv) and common.errors.run_cli.
"""

import importlib

import pytest

from common import cli, memory
from common.errors import InputError, run_cli
from in_process import assert_refused, run_program

TORCH = pytest.mark.torch
PROGRAMS = {"scratch.train": [], "scratch.mlp": [], "torchimpl.train": [TORCH], "torchimpl.mlp": [TORCH],
            "parity.__main__": [TORCH]}
EVERY_PROGRAM = [pytest.param(name, marks=marks) for name, marks in PROGRAMS.items()]
TRAINING = [pytest.param("scratch.train"), pytest.param("torchimpl.train", marks=TORCH)]
# The numeric flags of each program: (counts, real numbers), and the values each kind refuses.
CORE = ["--batch-size", "--limit", "--hidden", "--epochs"], ["--lr"]
TRAIN = CORE[0] + ["--print-every"], CORE[1] + ["--momentum", "--weight-decay", "--dropout"]
FLAGS = {"scratch.train": TRAIN, "torchimpl.train": TRAIN, "scratch.mlp": CORE, "torchimpl.mlp": CORE,
         "parity.__main__": (CORE[0][:3] + ["--steps"], TRAIN[1])}
BAD_COUNTS = ["-1", "1.5", "nan", "inf", "1e308", "", "abc", "2147483648", "18446744073709551616"]
BAD_REALS = ["-1", "nan", "inf", "-inf", "1e309", "1e308", "3.5e38", "", "abc"]


# ----------------------------------------------------------------------------- the types


def test_the_seed_is_a_whole_number_from_0_to_2_to_the_32_minus_1():
    assert cli.seed("0") == 0 and cli.seed(str(2**32 - 1)) == 2**32 - 1
    for text in ["-1", str(2**32), "18446744073709551616", "1.5", "", "abc"]:
        with pytest.raises(Exception, match="from 0 to 4294967295|expected a whole number"):
            cli.seed(text)


def test_counts_and_reals_stop_at_what_every_twin_handles():
    assert cli.positive_int(str(2**31 - 1)) == 2**31 - 1 and cli.non_negative_int("0") == 0
    assert cli.positive_float("3.4e38") == 3.4e38
    with pytest.raises(Exception, match="must be at most 2147483647"):
        cli.positive_int(str(2**31))
    with pytest.raises(Exception, match="must be at most 3.4028e[+]38"):
        cli.positive_float("1e308")  # torch turns lr into the float32 weights' dtype: it would overflow


# ----------------------------------------------------------------------------- every program


@pytest.mark.parametrize("module", EVERY_PROGRAM)
def test_every_numeric_flag_refuses_every_bad_value_in_one_line(module, capsys):
    counts, reals = FLAGS[module]
    for flag, value in [(f, v) for f in counts for v in BAD_COUNTS] + [(f, v) for f in reals for v in BAD_REALS]:
        value = "1" if flag == "--dropout" and value == "3.5e38" else value  # dropout: below 1
        assert_refused(run_program(module, [f"{flag}={value}"], capsys), f"argument {flag}: ", "got ")  # = : -inf


@pytest.mark.parametrize("module", EVERY_PROGRAM)
@pytest.mark.parametrize("value", ["-1", "18446744073709551616", "4294967296"])
def test_every_program_takes_the_same_seed_range(module, value, capsys):
    assert_refused(run_program(module, ["--seed", value], capsys),
                   f"argument --seed: must be a whole number from 0 to 4294967295 (2**32 - 1), got {value}")


@pytest.mark.parametrize("module, extra", [pytest.param(name, [], marks=marks) for name, marks in PROGRAMS.items()]
                         + [pytest.param(name, ["--summary"], marks=PROGRAMS[name]) for name in ("scratch.train",
                                                                                               "torchimpl.train")])
def test_a_network_too_large_for_the_machine_is_refused_before_allocating(module, extra, capsys):
    dtype = "float64" if module == "parity.__main__" else "float32"  # parity checks float64 first
    result = run_program(module, ["--hidden", "1000000000", "64", *extra], capsys)
    # 784 x 1e9 + 1e9 x 64 + 64 x 10 weights and 1e9 + 74 biases, 4 bytes each in float32
    need = memory.byte_text((784 * 10**9 + 10**9 * 64 + 640 + 10**9 + 74) * (8 if dtype == "float64" else 4))
    assert_refused(result, f"the network 784-1000000000-64-10 needs {need} for its {dtype} parameters; "
                           f"this machine has {memory.byte_text(memory.physical_memory())}")


def test_the_memory_check_compares_with_this_machines_memory(monkeypatch, capsys):
    monkeypatch.setattr(memory, "physical_memory", lambda: 100_000)
    # the default 784-128-64-10 network: 109,386 float32 parameters, 427 KiB
    assert_refused(run_program("scratch.mlp", [], capsys),
                   "the network 784-128-64-10 needs 427 KiB for its float32 parameters; this machine has 97.7 KiB")
    assert memory.byte_text(memory.parameter_bytes([784, 128, 64, 10], "float32")) == "427 KiB"


@pytest.mark.parametrize("module", TRAINING)
def test_an_allocation_that_fails_anyway_is_one_line_too(module, monkeypatch, capsys):
    program = importlib.import_module(module)
    if module == "scratch.train":
        def fail(*args, **kwargs):
            raise MemoryError("Unable to allocate 5.70 TiB for an array with shape (1000000000, 784)")
        monkeypatch.setattr(program, "init_params", fail)
    else:
        def fail(*args, **kwargs):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory")
        monkeypatch.setattr(program, "MLP", fail)
    assert_refused(run_program(module, ["--hidden", "1000", "--summary"], capsys),
                   "the network 784-1000-10 needs 3.03 MiB for its float32 parameters, which could not be allocated")


@pytest.mark.parametrize("module", TRAINING)
def test_the_largest_learning_rate_accepted_diverges_with_a_message_not_a_traceback(module, capsys):
    # four students, one per step: the second step at the latest sees the overflow
    flags = ["--lr", "3.4e38", "--data", "student", "--loss", "mse", "--batch-size", "1", "--epochs", "2"]
    status, out, err = run_program(module, flags, capsys)
    assert status == 2 and len(err) == 1 and "the run diverged, lower the learning rate" in err[0], err


@pytest.mark.parametrize("module", TRAINING)
def test_allow_nonfinite_reaches_the_load(module, tmp_path, monkeypatch, capsys):
    checkpoint = importlib.import_module(module).checkpoint
    calls = []
    monkeypatch.setattr(checkpoint, "load", lambda path, model, **kwargs: calls.append((path, kwargs)))
    model = str(tmp_path / "m.npz")
    for flags, allowed in [([], False), (["--allow-nonfinite"], True)]:
        status, out, _ = run_program(module, ["--load", model, "--summary", *flags], capsys)
        assert status == 0 and "trainable parameters" in out
        assert calls.pop() == (model, {"allow_nonfinite": allowed})


# ----------------------------------------------------------------------------- --device


@TORCH
@pytest.mark.parametrize("name", ["meta", "xla", "cpu:0", "cuda:x", "", "CPU"])
def test_a_device_torch_cannot_train_on_is_refused_before_any_work(name, capsys):
    assert_refused(run_program("torchimpl.train", ["--device", name], capsys),
                   f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps")


@TORCH
def test_a_cuda_index_past_the_devices_is_refused_with_their_count(monkeypatch):
    import torch

    from torchimpl.train import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"'cuda:2' asked for but this machine has 2 CUDA devices \(cuda:0 to cuda:1"):
        pick_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available here"):
        pick_device("cuda:0")


def test_running_out_of_memory_anyway_is_one_line_and_exit_2(capsys):
    """What the size checks could not foresee (a MemoryError mid-run) still ends in one line."""
    def main(argv):
        raise MemoryError("Unable to allocate 8.00 GiB")

    with pytest.raises(SystemExit) as exit_:
        run_cli(main, "prog", [])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith("prog: error: out of memory")
