"""Time training epochs of the NumPy twin and the PyTorch twin: python -m benchmarks [--sweep | --quick]

    python -m benchmarks                 default network 784-128-64-10, batch 64, full MNIST
    python -m benchmarks --sweep         batch 64/256/1024 x widths 128-64 ... 4096-4096, figures
    python -m benchmarks --quick         4096 images, one timed epoch: a smoke test (no files unless --out)
    python -m benchmarks --json          print the run as one JSON object on stdout

Backends: numpy (the core, scratch/mlp.py), numpy-minimal (the same arithmetic as one plain
loop), numpy-toolbox (the configurable network), torch-cpu (DataLoader), torch-cpu-resident, and
where CUDA is available torch-cuda (DataLoader), torch-cuda-resident and torch-cuda-graph. Every
timed record carries a per-phase profile (benchmarks/phases.py). Results go to
benchmarks/results/ under the current folder (--out) as MACHINE.json, MACHINE.md and
MACHINE-*.png, MACHINE being a slug of the GPU's or the CPU's name; a sweep's files are named
MACHINE-sweep. Progress goes to stderr.
The way each backend is measured is in benchmarks/runner.py.
"""

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from benchmarks import machine as mach
from benchmarks.compiled import compile_note
from benchmarks.peers import sklearn_note
from benchmarks.report import format_table, write_report
from benchmarks.runner import (BACKENDS, CUDA_BACKENDS, FULL_EPOCH, LOSS_FACTOR, STEP_CHECK_STEPS,
                               STEP_LOSS_RTOL, STEP_PARAM_RTOL, WARMUP_EPOCHS, run_config)
from common.cli import N_CLASSES, N_FEATURES, Parser, positive_float, positive_int, seed
from common.errors import InputError, run_cli
from common.idx import DEFAULT_DATA_DIR, FILES
from common.machine import available_cpus
from common.memory import check_memory
from common.outputs import check_outputs
from scratch.data import load_mnist

PROG = "python -m benchmarks"
DEFAULT_HIDDEN, DEFAULT_BATCH = [128, 64], 64
DEFAULT_RUNS, SWEEP_RUNS, QUICK_RUNS = 5, 3, 1
QUICK_IMAGES = 4096
# Relative to the working folder: from a clone's root that is the committed benchmarks/results/,
# and an installed copy writes where it is run, never into site-packages.
DEFAULT_OUT = Path("benchmarks", "results")

SWEEP_BATCHES = [64, 256, 1024]
# Images per epoch in the sweep, per width: NumPy on 2 cores runs at roughly 100 GFLOP/s, and a
# full epoch of 4096-4096 is ~7 TFLOP (~120 MFLOP per image), over a minute per epoch and
# backend. These counts keep each CPU epoch to a few seconds and the whole CPU sweep (3 CPU
# backends x 4 epochs + the floor, 12 configurations) to about 10 minutes on 2 cores.
SWEEP_IMAGES = {(128, 64): FULL_EPOCH, (512, 512): 30_000, (2048, 2048): 8192, (4096, 4096): 4096}
# The NumPy loops the core is measured against run at every batch size of the default network; a
# sweep leaves them out of the wider networks (unless --backends names them), where they would
# double NumPy's share of its time and no target compares them.
REFERENCE_LOOPS = ("numpy-minimal", "numpy-toolbox")

# ----------------------------------------------------------------------------- the command line


def build_parser():
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:7]))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sweep", action="store_true",
                      help=f"batch sizes {SWEEP_BATCHES} x hidden widths "
                           f"{', '.join('-'.join(map(str, w)) for w in SWEEP_IMAGES)}")
    mode.add_argument("--quick", action="store_true",
                      help=f"{QUICK_IMAGES} images, {QUICK_RUNS} timed epoch, the default network; "
                           f"writes no files unless --out is given")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=None, metavar="H",
                        help="hidden widths of the network (default: 128 64; not with --sweep)")
    parser.add_argument("--batch-size", type=positive_int, nargs="+", default=None, metavar="B",
                        help=f"minibatch sizes, each a configuration of this run (default: {DEFAULT_BATCH}; "
                             f"not with --sweep)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="train on the first N images per epoch, times scaled to 60000 images "
                             "(with --sweep: every width; default: the sweep's own per-width counts)")
    parser.add_argument("--runs", type=positive_int, default=None,
                        help=f"timed epochs per backend, after {WARMUP_EPOCHS} warm-up epoch "
                             f"(default: {DEFAULT_RUNS}, sweep {SWEEP_RUNS}, quick {QUICK_RUNS})")
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=None, metavar="NAME",
                        help=f"backends to run (default: all that this machine has: {', '.join(BACKENDS)})")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for NumPy's BLAS and torch, at most the CPUs available (default: all of them)")
    parser.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default: 0.5)")
    parser.add_argument("--seed", type=seed, default=0, help="seed for weights and shuffling, 0 to 4294967295 (default: 0)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder with the MNIST .gz files")
    parser.add_argument("--json", action="store_true", help="print the run as one JSON object on stdout")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the report files "
                             "(default: benchmarks/results under the current folder)")
    parser.add_argument("--no-save", action="store_true", help="write no files")
    return parser


def configurations(args):
    """[(hidden, batch_size, images)] to run."""
    if args.sweep:
        if args.hidden is not None or args.batch_size is not None:
            raise InputError("--sweep runs its own grid of widths and batch sizes: "
                             "drop --hidden and --batch-size, or drop --sweep")
        return [(list(hidden), batch, args.limit or images)
                for hidden, images in SWEEP_IMAGES.items() for batch in SWEEP_BATCHES]
    images = args.limit or (QUICK_IMAGES if args.quick else FULL_EPOCH)
    return [(args.hidden or DEFAULT_HIDDEN, batch, images) for batch in dict.fromkeys(args.batch_size or [DEFAULT_BATCH])]


def unavailable(quick):
    """{backend: why it cannot run here}: CUDA without a GPU, sklearn without scikit-learn, the
    compiled rows without a compiler; and in --quick the compiled rows, whose compiling alone
    (tens of seconds) would outlast the rest of a smoke test."""
    cuda = mach.cuda_note()
    notes = {name: cuda for name in CUDA_BACKENDS if cuda}
    if sklearn_note():
        notes["sklearn"] = sklearn_note()
    for name, (_, device) in BACKENDS.items():
        if name.endswith("-compiled") and name not in notes:
            why = compile_note(device) or (quick and "left out of --quick: compiling takes tens of seconds "
                                                     "(name it with --backends to time it)")
            if why:
                notes[name] = why
    return notes


def select_backends(requested, quick=False):
    """The backends to run, and {name: why not} for those this run leaves out."""
    if requested is None:
        notes = unavailable(quick)
        return [n for n in BACKENDS if n not in notes], notes
    notes = unavailable(quick=False)  # a backend named runs, --quick or not, wherever it can
    for name in requested:
        if name in notes:
            raise InputError(f"{name} asked for but {notes[name]}")
    return list(dict.fromkeys(requested)), {}


def check_out_dir(out, inputs):
    """Refuse, before any work, a report folder the run could not write into: a file in its
    place, a missing ancestor that cannot be made, or report files that could not be written."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {out} is a file: give a folder (a report is several files)")
    ancestor = folder.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the folder {ancestor} does not take new files: give a writable folder")
    if folder.is_dir():  # each report file, probed as --save's target is; the stem is any
        check_outputs({"--out": folder / "report.json"}, inputs)


# ----------------------------------------------------------------------------- the run


def log(line):
    print(line, file=sys.stderr, flush=True)


def run_settings(args, mode, runs, not_measured, argv):
    """The `run` object of the JSON: how this run was made, for the report."""
    words = sys.argv[1:] if argv is None else argv
    return {"mode": mode, "command": " ".join([PROG, *map(shlex.quote, words)]),
            "dtype": "float32", "optimizer": "SGD", "loss": "cross-entropy", "lr": args.lr, "seed": args.seed,
            "runs": runs, "warmup_epochs": WARMUP_EPOCHS, "full_epoch": FULL_EPOCH,
            "step_check_steps": STEP_CHECK_STEPS, "step_loss_rtol": STEP_LOSS_RTOL,
            "step_param_rtol": STEP_PARAM_RTOL, "loss_factor": LOSS_FACTOR,
            "timer": "time.perf_counter, torch.cuda.synchronize() before each read on CUDA",
            "cuda_graph": "torch.cuda.graph capture of the whole step (not torch.compile)",
            "not_measured": not_measured}


def failures(results):
    """One line per backend that failed a check or could not run."""
    lines = []
    for r in results:
        if "error" in r:
            why = r["error"]
        elif r.get("loss_ok") is False:
            why = (f"final loss {r['final_loss']:.4f} against numpy's: not within the factor "
                   f"{LOSS_FACTOR:g} that batch order alone explains")
        else:
            continue
        lines.append(f"{PROG}: {r['backend']} at batch {r['batch_size']}, hidden {r['hidden']}: {why}")
    return lines


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit > FULL_EPOCH:
        raise InputError(f"--limit {args.limit} exceeds the {FULL_EPOCH} training images")
    if args.threads is not None:
        mach.check_threads(args.threads)
    configs = configurations(args)
    for hidden, _, _ in configs:  # a width too large for this machine, refused before anything is allocated
        check_memory([N_FEATURES, *hidden, N_CLASSES], "float32")
    backends, not_measured = select_backends(args.backends, args.quick)
    save = not args.no_save and (args.out is not None or not args.quick)
    if save:
        check_out_dir(args.out or DEFAULT_OUT, {"--data-dir": [Path(args.data_dir) / name for name in FILES["train"]]})
        mach.require("matplotlib", "draw the report's figures (or pass --no-save)")
    runs = args.runs or (SWEEP_RUNS if args.sweep else QUICK_RUNS if args.quick else DEFAULT_RUNS)

    load_before = mach.load_average()
    if load_before is not None and load_before > 0.5:
        log(f"{PROG}: caution: the 1-minute load average is {load_before}; other processes are "
            f"using the CPU, and CPU timings will be inflated (try a quiet machine, or --threads 1)")
    limiter = mach.pin_threads(args.threads or available_cpus())
    mach.pin_float32()
    try:
        X, y = load_mnist(args.data_dir, "train")
        machine = mach.describe_machine()
        log(f"{PROG}: {machine['cpu']}, GPU {machine['gpu']}, threads {machine['threads']}, "
            f"backends {', '.join(backends)}")
        for why in dict.fromkeys(not_measured.values()):
            log(f"{PROG}: not measured: {', '.join(n for n, w in not_measured.items() if w == why)}: {why}")
        results = []
        for hidden, batch_size, images in configs:
            names = backends
            if args.sweep and args.backends is None and list(hidden) != DEFAULT_HIDDEN:
                names = [n for n in backends if n not in REFERENCE_LOOPS]
            results += run_config(X[:images], y[:images], hidden, batch_size, names, runs,
                                  lr=args.lr, seed=args.seed, log=log)
    finally:
        limiter.restore_original_limits()

    mode = "sweep" if args.sweep else "quick" if args.quick else "default"
    run = run_settings(args, mode, runs, not_measured, argv)
    run["load_average"] = {"before": load_before, "after": mach.load_average()}
    data = {"machine": machine, "run": run, "results": results}
    if save:
        stem = mach.machine_slug(machine) + ("" if mode == "default" else f"-{mode}")
        for path in write_report(data, args.out or DEFAULT_OUT, stem):
            log(f"wrote {path}")
    print(json.dumps(data, indent=2) if args.json else format_table(data), flush=True)
    failed = failures(results)
    for line in failed:
        log(line)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, PROG))
