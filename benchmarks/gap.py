"""Why NumPy's epoch stands well above its matmul floor at width 2048-2048, batch 64: measured.

Run it: python -m benchmarks.gap [--threads 2] [--hidden 2048 2048] [--batch-size 64] [--images 1024]
(about 15 s on 2 cores). Part of the benchmarks (docs/benchmarks.md quotes its figures). It
times, on the same images, the core's epoch, the matmul floor, the core's step phase by phase
(benchmarks/phases.py), and the SGD update on its own: `p -= lr * g` against `p -= g`. The
update is memory-bound (each weight read and written, through a temporary the size of the
weights), so more BLAS threads shrink the products and not the update.
"""

import statistics
import time

import numpy as np

from benchmarks import machine, phases, runner
from benchmarks.backends import NumpyBackend
from common.cli import N_CLASSES, N_FEATURES, Parser, positive_int
from common.errors import run_cli
from common.memory import check_memory
from scratch import mlp
from scratch.data import load_mnist
from scratch.toolbox.model import init_params

PROG = "python -m benchmarks.gap"


def median_seconds(fn, runs=3):
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def update_seconds(params, grads, lr, steps):
    """Seconds of `steps` SGD updates as the core writes them, and with the learning rate folded
    away (p -= g: no temporary, the least memory traffic an update can have)."""
    sgd = mlp.SGD(params, lr=lr)

    def core():
        for _ in range(steps):
            sgd.step(grads)

    def bare():
        for _ in range(steps):
            for name, p in params.items():
                p -= grads[name]

    return median_seconds(core), median_seconds(bare)


def main(argv=None):
    parser = Parser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=positive_int, default=1, help="BLAS threads, at most the CPUs (default: 1)")
    parser.add_argument("--hidden", type=positive_int, nargs="+", default=[2048, 2048],
                        help="hidden widths (default: 2048 2048)")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="minibatch size (default: 64)")
    parser.add_argument("--images", type=positive_int, default=1024, help="images timed (default: 1024)")
    args = parser.parse_args(argv)
    machine.check_threads(args.threads)
    check_memory([N_FEATURES, *args.hidden, N_CLASSES], "float32")
    limiter = machine.pin_threads(args.threads)
    try:
        X, y = load_mnist()
        X, y, B = X[:args.images], y[:args.images], args.batch_size
        sizes = [N_FEATURES, *args.hidden, N_CLASSES]
        params = init_params(sizes, np.random.default_rng(0))
        backend = NumpyBackend(X, y, params, B, 0.5, 0)
        backend.epoch()  # warm-up
        epoch = median_seconds(backend.epoch)
        floor = statistics.median(runner.matmul_floor(sizes, B, len(X), 3))
        spent, _ = phases.numpy_phases(X, y, params, B, 0.5, 0)
        steps = -(-len(X) // B)
        grads = {k: np.full_like(v, 1e-9) for k, v in params.items()}
        core_update, bare_update = update_seconds(backend.params, grads, 0.5, steps)
    finally:
        limiter.restore_original_limits()
    ms = 1e3 / steps
    print(f"{PROG}: {'-'.join(map(str, args.hidden))}, batch {B}, {len(X)} images ({steps} steps), "
          f"{args.threads} BLAS thread(s); ms per step:")
    print(f"  epoch {epoch * ms:.1f}, matmul floor {floor * ms:.1f} ({epoch / floor:.2f}x)")
    print("  phases: " + ", ".join(f"{name} {seconds * ms:.1f}" for name, seconds in spent.items())
          + f" (sum {sum(spent.values()) * ms:.1f})")
    print(f"  the update alone: p -= lr * g {core_update * ms:.1f}, p -= g {bare_update * ms:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, PROG))
