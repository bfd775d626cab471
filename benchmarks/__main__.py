"""Time training epochs of the NumPy twin and the PyTorch twin: python -m benchmarks [--sweep | --quick]

    python -m benchmarks                 default network 784-128-64-10, batch 64, full MNIST
    python -m benchmarks --sweep         batch 64/256/1024 x widths 128-64 ... 4096-4096, figures
    python -m benchmarks --quick         4096 images, one timed epoch: a smoke test (no files unless --out)
    python -m benchmarks --json          print the run as one JSON object on stdout

Backends: numpy (scratch/), torch-cpu (DataLoader), torch-cpu-resident, and where CUDA is
available torch-cuda (DataLoader), torch-cuda-resident and torch-cuda-graph. Results go to
benchmarks/results/ under the current folder (--out) as MACHINE.json, MACHINE.md and
MACHINE-*.png, MACHINE being a slug of the GPU's or the CPU's name; a sweep's files are named
MACHINE-sweep. Progress goes to stderr.
The way each backend is measured is in benchmarks/runner.py.
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

from benchmarks import machine as mach
from benchmarks.report import format_table, write_report
from benchmarks.runner import (BACKENDS, CUDA_BACKENDS, FULL_EPOCH, LOSS_FACTOR, STEP_CHECK_STEPS,
                               STEP_LOSS_RTOL, STEP_PARAM_RTOL, WARMUP_EPOCHS, run_config)
from common.cli import positive_float, positive_int
from common.errors import InputError, run_cli
from common.idx import DEFAULT_DATA_DIR
from common.machine import available_cpus
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

# ----------------------------------------------------------------------------- the command line


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
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
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"minibatch size (default: {DEFAULT_BATCH}; not with --sweep)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="train on the first N images per epoch, times scaled to 60000 images "
                             "(with --sweep: every width; default: the sweep's own per-width counts)")
    parser.add_argument("--runs", type=positive_int, default=None,
                        help=f"timed epochs per backend, after {WARMUP_EPOCHS} warm-up epoch "
                             f"(default: {DEFAULT_RUNS}, sweep {SWEEP_RUNS}, quick {QUICK_RUNS})")
    parser.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=None, metavar="NAME",
                        help=f"backends to run (default: all that this machine has: {', '.join(BACKENDS)})")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for NumPy's BLAS and torch (default: the CPUs available)")
    parser.add_argument("--lr", type=positive_float, default=0.5, help="learning rate (default: 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and shuffling (default: 0)")
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
    return [(args.hidden or DEFAULT_HIDDEN, args.batch_size or DEFAULT_BATCH, images)]


def select_backends(requested):
    """The backends to run, and {name: why not} for the CUDA ones this machine cannot run."""
    note = mach.cuda_note()
    if requested is None:
        names = [n for n in BACKENDS if note is None or n not in CUDA_BACKENDS]
        return names, ({n: note for n in CUDA_BACKENDS} if note else {})
    asked_cuda = [n for n in requested if n in CUDA_BACKENDS]
    if asked_cuda and note:
        raise InputError(f"{', '.join(asked_cuda)} asked for but {note}")
    return list(dict.fromkeys(requested)), {}


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
    configs = configurations(args)
    backends, not_measured = select_backends(args.backends)
    save = not args.no_save and (args.out is not None or not args.quick)
    if save:
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
        if not_measured:
            log(f"{PROG}: not measured: {', '.join(not_measured)}: {machine['cuda_note']}")
        results = []
        for hidden, batch_size, images in configs:
            results += run_config(X[:images], y[:images], hidden, batch_size, backends, runs,
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
