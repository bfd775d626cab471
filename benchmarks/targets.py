"""The issue's targets and the textbook's claims, evaluated from the records of a run.

Part of `python -m benchmarks`; used by benchmarks/report.py. Nothing here is hard-coded as met:
each verdict is computed from the measured records ("met", "not met" or "not measured", with
the reason), and each target carries the measured numbers that explain or bound it.
"""

import math

from benchmarks.runner import CUDA_BACKENDS, FULL_EPOCH, width_label
from common.cli import N_CLASSES, N_FEATURES

DEFAULT_HIDDEN, DEFAULT_BATCH = [128, 64], 64
WIDE_HIDDEN, WIDE_BATCH = [4096, 4096], 1024
TARGET_GPUS = ("H100", "H200")  # the GPU targets are set for these

# ----------------------------------------------------------------------------- lookups


def find(results, backend, hidden, batch_size):
    """The record of `backend` at (hidden, batch_size), or None."""
    for record in results:
        if (record["backend"] == backend and record["hidden"] == list(hidden)
                and record["batch_size"] == batch_size):
            return record
    return None


def timed(record):
    return record is not None and record.get("median_s") is not None and "error" not in record


def useful_flops_per_image(hidden):
    """Forward 2*in*out per layer, backward 2*in*out for dW and for dx except at the input."""
    sizes = [N_FEATURES, *hidden, N_CLASSES]
    products = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 6 * sum(products) - 2 * products[0]


def gflops(record):
    """Useful GFLOP/s of a record's median epoch (per 60,000 images, as the times are)."""
    return useful_flops_per_image(record["hidden"]) * FULL_EPOCH / record["median_s"] / 1e9


def us_per_step(record, seconds=None):
    """Microseconds per step of an epoch of 60,000 images at the record's batch size."""
    steps = math.ceil(FULL_EPOCH / record["batch_size"])
    return (record["median_s"] if seconds is None else seconds) / steps * 1e6


def missing(data, backend, hidden, batch_size):
    """Why there is no timed record of backend at (hidden, batch_size)."""
    record = find(data["results"], backend, hidden, batch_size)
    if record is not None and "error" in record:
        return f"the {backend} run failed: {record['error']}"
    if backend in CUDA_BACKENDS and data["machine"].get("cuda_note"):
        return f"CUDA not measured: {data['machine']['cuda_note']}"
    return f"this run has no {backend} record at {width_label(hidden)}, batch {batch_size} (run --sweep)"


def verdict(ok):
    return "met" if ok else "not met"


def gpu_caveat(machine):
    gpu = machine.get("gpu") or ""
    if gpu and not any(name in gpu for name in TARGET_GPUS):
        return f" (measured on {gpu}; the target is set for an H100 or H200)"
    return ""


def scaled_note(*records):
    sizes = sorted({r["scaled_from"] for r in records if "scaled_from" in r})
    return f" (scaled from epochs of {', '.join(map(str, sizes))} images)" if sizes else ""


def phase_summary(record):
    """The record's measured phases and left, largest first, as 'optimizer 0.12 s, ...'."""
    profile = record["profile"]
    parts = {**profile["phases_s"], "left (Python, dispatch)": profile["left_s"]}
    return ", ".join(f"{name} {seconds:.3f} s" for name, seconds in sorted(parts.items(), key=lambda kv: -kv[1]))


def outside_floor(record):
    """What the record's epoch spends outside the matrix products, from its profile."""
    m, f = record["median_s"], record["floor_s"]
    text = (f"{m - f:.3f} s ({(m - f) / m:.0%} of the epoch, {us_per_step(record, m - f):.0f} µs a step) "
            "outside the products")
    profile = record.get("profile") or {}
    if profile.get("phases_s"):
        spent = profile["phases_s"]
        products = spent["forward products"] + spent["backward products"]
        text += (f"; measured: products {products:.3f} s in the step against {f:.3f} s alone, "
                 + ", ".join(f"{name} {spent[name]:.3f} s" for name in ("elementwise", "loss", "optimizer", "gather"))
                 + f", left (Python calls) {profile['left_s']:.3f} s")
    return text


def left_gap(record, reference, what):
    """The difference in `left` (the epoch outside the measured phases) between two NumPy records."""
    a, b = (r.get("profile") or {} for r in (record, reference))
    if "left_s" not in a or "left_s" not in b:
        return f"{us_per_step(record, record['median_s'] - reference['median_s']):+.0f} µs per step: {what}"
    gap = a["left_s"] - b["left_s"]
    return (f"the same arithmetic (same measured phases); left {a['left_s']:.3f} s against {b['left_s']:.3f} s: "
            f"{us_per_step(record, gap):+.0f} µs per step of {what}")


def floor_count(record):
    products = record.get("floor_products")
    return f"{len(products)} products" if products else "the step's products"


# ----------------------------------------------------------------------------- the targets


def evaluate_targets(data):
    """A list of {target, verdict, measured, explanation}: the CPU targets, then the GPU ones."""
    results, machine = data["results"], data["machine"]
    d, b = DEFAULT_HIDDEN, DEFAULT_BATCH
    numpy, torch_cpu = find(results, "numpy", d, b), find(results, "torch-cpu", d, b)
    resident = find(results, "torch-cpu-resident", d, b)
    cuda_res, graph = find(results, "torch-cuda-resident", d, b), find(results, "torch-cuda-graph", d, b)
    out = []

    def add(target, ok, measured, explanation=""):
        out.append({"target": target, "verdict": verdict(ok), "measured": measured,
                    "explanation": explanation})

    def absent(target, reason):
        out.append({"target": target, "verdict": "not measured", "measured": reason, "explanation": ""})

    def measurable(target, needs, hidden=d, batch_size=b):
        """True when each backend of needs ({backend: whether its record has what the target
        uses}) does. Otherwise the target goes in as not measured, with the reason for the first
        backend that does not: the order of needs decides which one the report names."""
        for backend, present in needs.items():
            if not present:
                absent(target, missing(data, backend, hidden, batch_size))
                return False
        return True

    threads = machine.get("threads", {}).get("numpy_blas")
    cpu = f"CPU ({threads} BLAS thread{'s' * (threads != 1)})" if threads else "CPU"
    minimal, toolbox = find(results, "numpy-minimal", d, b), find(results, "numpy-toolbox", d, b)
    sklearn = find(results, "sklearn", d, b)

    t = f"{cpu}, 128-64, batch 64: the core's numpy epoch within 1.05x the minimal loop (numpy-minimal)"
    if measurable(t, {"numpy": timed(numpy), "numpy-minimal": timed(minimal)}):
        m, r = numpy["median_s"], minimal["median_s"]
        add(t, m <= 1.05 * r, f"numpy {m:.3f} s, numpy-minimal {r:.3f} s: {m / r:.2f}x",
            left_gap(numpy, minimal, "the core's function calls (linear_forward, relu_forward, caches, dicts)"))

    t = f"{cpu}, 128-64, batch 64: numpy's epoch within 1.5x its matmul floor"
    if measurable(t, {"numpy": timed(numpy) and numpy.get("floor_s")}):
        m, f = numpy["median_s"], numpy["floor_s"]
        add(t, m <= 1.5 * f, f"numpy {m:.3f} s, floor {f:.3f} s ({floor_count(numpy)}): "
            f"{m / f:.2f}x{scaled_note(numpy)}", outside_floor(numpy))

    t = f"{cpu}: numpy's epoch within 1.15x its matmul floor at batch 256 and above"
    large = [r for r in results if r["backend"] == "numpy" and r["batch_size"] >= 256 and timed(r)
             and r.get("floor_s")]
    if not large:
        absent(t, "this run has no numpy record at batch 256 or above (run --sweep, or --batch-size 256)")
    else:
        worst = max(large, key=lambda r: r["median_s"] / r["floor_s"])
        add(t, all(r["median_s"] <= 1.15 * r["floor_s"] for r in large),
            "; ".join(f"{width_label(r['hidden'])} batch {r['batch_size']}: {r['median_s'] / r['floor_s']:.2f}x"
                      for r in large),
            f"worst {width_label(worst['hidden'])} at batch {worst['batch_size']}: " + outside_floor(worst))

    t = f"{cpu}, 128-64, batch 64: the configurable network (numpy-toolbox, default options) within 1.15x the core"
    if measurable(t, {"numpy": timed(numpy), "numpy-toolbox": timed(toolbox)}):
        m, c = numpy["median_s"], toolbox["median_s"]
        add(t, c <= 1.15 * m, f"numpy-toolbox {c:.3f} s, numpy {m:.3f} s: {c / m:.2f}x",
            left_gap(toolbox, numpy, "the toolbox's checks and its general layer loop"))

    t = f"{cpu}, 128-64, batch 64: numpy at least 1.5x faster than scikit-learn's MLPClassifier"
    if measurable(t, {"numpy": timed(numpy), "sklearn": timed(sklearn)}):
        m, k = numpy["median_s"], sklearn["median_s"]
        why = f"{us_per_step(sklearn, k - m):+.0f} µs per step against numpy"
        if timed(numpy) and (numpy.get("profile") or {}).get("phases_s"):
            why += f"; numpy's own step: {phase_summary(numpy)}"
        add(t, k >= 1.5 * m, f"sklearn {k:.3f} s, numpy {m:.3f} s: numpy {k / m:.2f}x faster", why)

    t = f"{cpu}, 128-64, batch 64: numpy faster than torch-cpu"
    if measurable(t, {"numpy": timed(numpy), "torch-cpu": timed(torch_cpu)}):
        m, c = numpy["median_s"], torch_cpu["median_s"]
        why = ""
        if torch_cpu.get("loader_s") is not None:
            why = (f"torch-cpu's DataLoader pass alone (per-example __getitem__, collate) takes "
                   f"{torch_cpu['loader_s']:.3f} s of its {c:.3f} s")
        add(t, m < c, f"numpy {m:.3f} s, torch-cpu {c:.3f} s: torch-cpu / numpy = {c / m:.2f}", why)

    t = f"{cpu}, 128-64, batch 64: torch-cpu-resident within 1.2x numpy"
    if measurable(t, {"numpy": timed(numpy), "torch-cpu-resident": timed(resident)}):
        m, r = numpy["median_s"], resident["median_s"]
        why = (f"torch-cpu-resident takes {us_per_step(resident, r - m):+.0f} µs per step against numpy "
               f"({us_per_step(resident):.0f} µs vs {us_per_step(numpy):.0f} µs)")
        if (resident.get("profile") or {}).get("phases_s"):
            why += (f"; its profile: {phase_summary(resident)}, "
                    f"{resident['profile']['ops_per_step']:.0f} operators a step")
        add(t, r <= 1.2 * m, f"numpy {m:.3f} s, torch-cpu-resident {r:.3f} s: {r / m:.2f}x", why)

    t = "GPU, 128-64, batch 64: torch-cuda-resident at most 0.25 s an epoch"
    if measurable(t, {"torch-cuda-resident": timed(cuda_res)}):
        s = cuda_res["median_s"]
        why = f"{us_per_step(cuda_res):.0f} µs per step, each step's kernels launched one by one"
        if timed(graph):
            why += (f"; replayed as a CUDA graph the same step takes {us_per_step(graph):.0f} µs, so "
                    f"{1 - graph['median_s'] / s:.0%} of the eager step is launch and Python overhead")
        add(t, s <= 0.25, f"{s:.4f} s{gpu_caveat(machine)}{scaled_note(cuda_res)}", why)

    t = "GPU, 128-64, batch 64: torch-cuda-graph at most 0.05 s an epoch"
    if measurable(t, {"torch-cuda-graph": timed(graph)}):
        s = graph["median_s"]
        add(t, s <= 0.05, f"{s:.4f} s{gpu_caveat(machine)}{scaled_note(graph)}",
            f"{us_per_step(graph):.1f} µs per step: one index copy and one graph replay, "
            f"{useful_flops_per_image(d) * b / 1e6:.0f} MFLOP of arithmetic")

    t = "GPU, 128-64, batch 64: the launch-bound prediction within 30% of torch-cuda-resident's epoch"
    predicted = next((r["profile"] for r in (resident, cuda_res)
                      if r is not None and (r.get("profile") or {}).get("cuda_prediction_s")), None)
    if measurable(t, {"torch-cuda-resident": timed(cuda_res)}):
        if predicted is None:
            absent(t, "no torch profile in this run gave a prediction")
        else:
            low, high = predicted["cuda_prediction_s"]
            mid, s = (low + high) / 2, cuda_res["median_s"]
            add(t, abs(s - mid) <= 0.3 * mid,
                f"predicted {low:.3f}-{high:.3f} s (middle {mid:.3f} s), measured {s:.4f} s: {s / mid:.2f}x",
                f"{predicted['cuda_launches_per_step']:.0f} launches a step at "
                f"{predicted['launch_us'][0]:g}-{predicted['launch_us'][1]:g} µs each")

    t = "GPU, 4096-4096, batch 1024: the GPU at least 100x faster than numpy"
    wide_np = find(results, "numpy", WIDE_HIDDEN, WIDE_BATCH)
    wide_gpu = [r for r in (find(results, n, WIDE_HIDDEN, WIDE_BATCH) for n in CUDA_BACKENDS) if timed(r)]
    if measurable(t, {"numpy": timed(wide_np), "torch-cuda-graph": wide_gpu}, WIDE_HIDDEN, WIDE_BATCH):
        best = min(wide_gpu, key=lambda r: r["median_s"])
        ratio = wide_np["median_s"] / best["median_s"]
        why = f"numpy runs at {gflops(wide_np):.0f} GFLOP/s"
        if wide_np.get("floor_s"):
            why += f" (its matmul floor at {gflops({**wide_np, 'median_s': wide_np['floor_s']}):.0f})"
        why += f", {best['backend']} at {gflops(best):.0f} GFLOP/s (float32, TF32 off)"
        add(t, ratio >= 100, f"numpy {wide_np['median_s']:.2f} s, {best['backend']} "
            f"{best['median_s']:.4f} s: {ratio:.0f}x{gpu_caveat(machine)}{scaled_note(wide_np, best)}", why)
    return out


# ----------------------------------------------------------------------------- the textbook


def textbook_claims(data):
    """Rows [claim, textbook figure, measured here] for the report."""
    results, d, b = data["results"], DEFAULT_HIDDEN, DEFAULT_BATCH
    numpy, torch_cpu = find(results, "numpy", d, b), find(results, "torch-cpu", d, b)
    resident = find(results, "torch-cpu-resident", d, b)
    rows = []
    measured = (f"{numpy['median_s']:.2f} s{scaled_note(numpy)}" if timed(numpy)
                else missing(data, "numpy", d, b))
    rows.append(["NumPy epoch (128-64, batch 64)", "30-60 s", measured])
    gpu = [r for r in (find(results, n, d, b) for n in CUDA_BACKENDS) if timed(r)]
    if gpu:
        measured = "; ".join(f"{r['backend']} {r['median_s']:.3f} s" for r in gpu)
        measured += f" on {data['machine'].get('gpu')}"
    else:
        measured = missing(data, "torch-cuda", d, b)
    rows.append(["GPU epoch (a modest GPU)", "5-10 s", measured])
    if timed(numpy) and timed(torch_cpu):
        parts = [f"numpy / torch-cpu = {numpy['median_s'] / torch_cpu['median_s']:.2f}"]
        if timed(resident):
            parts.append(f"numpy / torch-cpu-resident = {numpy['median_s'] / resident['median_s']:.2f}")
        measured = "; ".join(parts) + " (above 1: torch faster)"
    else:
        measured = missing(data, "torch-cpu" if timed(numpy) else "numpy", d, b)
    rows.append(["CPU PyTorch against NumPy", "2-3x faster", measured])
    return rows
