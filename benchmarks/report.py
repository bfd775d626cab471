"""The Markdown report, the terminal table, and the files of a run (JSON, Markdown, PNGs).

Part of `python -m benchmarks`. Everything is computed from the run's JSON object
({"machine", "run", "results"}), so a saved JSON can be turned into a report again:
    python -c "import json, benchmarks.report as r; r.write_report(json.load(open(F)), 'out', 'name')"
"""

import json
from pathlib import Path

from benchmarks.figures import plot_figures
from benchmarks.phases import LAUNCH_US, PHASES
from benchmarks.runner import width_label
from benchmarks.targets import evaluate_targets, find, textbook_claims, timed
from common.outputs import atomic_write

# ----------------------------------------------------------------------------- numbers


def speedup(record, results):
    """numpy's median over this record's, at the same network and batch size; None without numpy."""
    numpy = find(results, "numpy", record["hidden"], record["batch_size"])
    if not (timed(numpy) and timed(record)):
        return None
    return numpy["median_s"] / record["median_s"]


def fmt(value, spec=".4g", none="—"):
    return none if value is None else format(value, spec)


def rows(data):
    """One row per record: the columns shared by the Markdown and the terminal table."""
    out = []
    for r in data["results"]:
        scaled = "*" if "scaled_from" in r else ""
        if "error" in r:
            out.append([r["backend"], r["device"], str(r["batch_size"]), width_label(r["hidden"]),
                        "failed", "", "", "", r["error"]])
            continue
        loss = f"{r['final_loss']:.4f}"
        if r.get("loss_rel_diff") is not None and r["backend"] != "numpy":
            loss += f" ({r['loss_rel_diff']:+.1%})"
        if r.get("loss_ok") is False:
            loss += " FAIL"
        out.append([r["backend"], r["device"], str(r["batch_size"]), width_label(r["hidden"]),
                    f"{r['median_s']:.4g}{scaled}", f"{r['min_s']:.4g}-{r['max_s']:.4g}",
                    fmt(speedup(r, data["results"]), ".2f"), fmt(r.get("floor_s")), loss])
    return out


HEADER = ["backend", "device", "batch", "width", "median epoch s", "min-max s",
          "speedup over numpy", "matmul floor s", "final loss (vs numpy)"]


def format_table(data):
    """The results as a fixed-width text table for the terminal."""
    table = [HEADER] + rows(data)
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any("scaled_from" in r for r in data["results"]):
        lines.append("* epoch time scaled to 60000 images from a shorter epoch (see `images`)")
    return "\n".join(lines)


def markdown_table(header, body):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the report


def machine_section(machine):
    threads = machine["threads"]
    tf32 = machine["tf32"]
    blas = ", ".join(f"{b['library']} {b['version'] or ''} ({b['architecture'] or '?'}, "
                     f"{b['threads']} threads)" for b in machine.get("blas", [])) or "unknown"
    body = [
        ["CPU", f"{machine['cpu']} ({machine['cores']} logical CPUs, {machine['cpus_available']} available)"],
        ["GPU", machine["gpu"] or f"none: {machine.get('cuda_note')}"],
        ["Python / NumPy / torch", f"{machine['python']} / {machine['numpy']} / {machine['torch']}"
                                   f" (CUDA {machine.get('cuda') or 'none'})"],
        ["scikit-learn", machine.get("scikit_learn") or "not installed"],
        ["threads", f"NumPy BLAS {threads['numpy_blas']}, torch {threads['torch']} "
                    f"(interop {threads['torch_interop']}), pinned before timing"],
        ["BLAS", blas],
        ["TF32", f"set by {tf32.get('set', 'pin_float32')}; read back: matmul allow_tf32 "
                 f"{tf32['cuda_matmul_allow_tf32']}, cudnn allow_tf32 {tf32['cudnn_allow_tf32']}, "
                 f"float32_matmul_precision {tf32['float32_matmul_precision']}"
                 + (f", cuda.matmul.fp32_precision {tf32['cuda_matmul_fp32_precision']}"
                    if "cuda_matmul_fp32_precision" in tf32 else "")],
        ["platform", machine["platform"]],
    ]
    return markdown_table(["", ""], body)


def method_section(run):
    return "\n".join([
        f"- Network 784-H-10 (ReLU), float32, SGD lr {run['lr']:g}, cross-entropy, MNIST training "
        f"images; every backend starts from the same weights (scratch.toolbox.model.init_params, seed "
        f"{run['seed']}, copied into torch by parity.convert.load_params_into).",
        f"- Per backend and configuration: {run['step_check_steps']} training steps on the same "
        f"batches compared with NumPy's (losses within {run['step_loss_rtol']:g}, each weight "
        f"tensor within {run['step_param_rtol']:g}, normwise: max|a - b| / max|b|) "
        f"before anything is timed; then {run['warmup_epochs']} untimed warm-up epoch and "
        f"{run['runs']} timed epoch(s): the median, with min and max.",
        "- Clock: time.perf_counter around each epoch; on CUDA, torch.cuda.synchronize() before "
        "each clock read. The loss is summed on the device and read once per epoch (no .item() "
        "in the timed loop); graph capture happens before the warm-up epoch.",
        "- torch-cuda-graph: the whole step (gather, zero_grad, forward, backward, SGD) captured "
        "with torch.cuda.graph, not torch.compile.",
        "- torch-cpu-compiled / torch-cuda-compiled: the resident loop with its forward and loss "
        "through torch.compile (inductor; on CUDA mode=\"reduce-overhead\"), compiled and warmed up "
        "for every batch size of the epoch before the step check; that compile time is reported "
        "apart (Compile times) and is in no epoch time. --quick leaves them out.",
        "- sklearn: scikit-learn's MLPClassifier (solver sgd, momentum 0, alpha 0, constant lr, "
        "the same batch size), started from the shared weights, one partial_fit per epoch; its "
        "setup (the first partial_fit) is outside the timed region.",
        "- Matmul floor: the matrix products a training step needs, alone (per layer x @ W.T and "
        "dz.T @ x, and dz @ W for every layer but the first: the first layer's dx would be the "
        "images' gradient, which training never uses and neither scratch's backward nor torch's "
        "autograd computes; 8 products for 784-128-64-10), same shapes, preallocated outputs, "
        "over one epoch's worth of steps, in the same run.",
        "- numpy is the core's step (scratch/mlp.py); numpy-minimal the same arithmetic as one plain "
        "loop (benchmarks/references.py), numpy-toolbox the configurable network with default "
        "options (scratch/toolbox/model.py, scratch/train.py's step).",
        "- Profile: each timed record's epoch split into phases, measured on a fraction of the epoch "
        "and scaled to 60,000 images (see Where the time goes).",
        f"- Epochs shorter than {run['full_epoch']} images (marked *) are scaled to "
        f"{run['full_epoch']} images; every backend of a configuration trains on the same images.",
        f"- After the timed epochs each backend's mean training loss over its last epoch is set "
        f"beside NumPy's; the backends shuffle with different generators, so the losses differ "
        f"by the batch order; they must agree within a factor {run['loss_factor']:g} (see "
        f"benchmarks/runner.py for the spread measured over shuffle seeds).",
    ])


def correctness_rows(results):
    body = []
    for r in results:
        check = r.get("step_check") or {}
        body.append([r["backend"], str(r["batch_size"]), width_label(r["hidden"]),
                     fmt(check.get("loss_rel_err"), ".1e"), fmt(check.get("param_rel_err"), ".1e"),
                     {True: "ok", False: "FAIL"}.get(check.get("ok"), "—"),
                     fmt(r.get("final_loss"), ".4f"), fmt(r.get("loss_rel_diff"), "+.1%"),
                     {True: "ok", False: "FAIL"}.get(r.get("loss_ok"), "—")])
    return body


def markdown_report(data, figures):
    """The whole report as Markdown; `figures` maps name -> {"file": name} or {"skipped": why}."""
    machine, run, results = data["machine"], data["run"], data["results"]
    title = machine["gpu"] or f"{machine['cpu']}, {machine['cores']} CPUs"
    parts = [f"# Benchmarks: {title}", "",
             f"Written by `{run['command']}`. Times are seconds per training epoch of 60,000 images.", "",
             "## Machine", "", machine_section(machine), "", "## Method", "", method_section(run), "",
             "## Results", "", markdown_table(HEADER, rows(data))]
    floors = {len(r["floor_products"]): r["floor_products"] for r in results if r.get("floor_products")}
    for count, products in floors.items():
        parts += ["", f"The matmul floor counts the {count} products a training step needs: "
                  f"{', '.join(f'`{p}`' for p in products)} (no `dz1 @ W1`: nothing trains the images)."]
    if any("scaled_from" in r for r in results):
        parts += ["", "\\* scaled to 60,000 images from the epoch actually timed: "
                  + ", ".join(sorted({f"{width_label(r['hidden'])} on {r['scaled_from']} images"
                                      for r in results if "scaled_from" in r}))]
    load = (run.get("load_average") or {}).get("before")
    if load is not None and load > 0.5:
        parts += ["", f"**Caution**: the 1-minute load average was {load} when the run started "
                  f"({machine['cpus_available']} CPUs available): other processes were using the CPU, "
                  "so CPU times may be inflated, multi-threaded BLAS most of all."]
    compiled = [r for r in results if r.get("compile_seconds") is not None]
    if compiled:
        parts += ["", "Compile times, in no epoch time above (torch.compile's first calls, for every batch "
                  "size the epoch uses):", "",
                  markdown_table(["backend", "batch", "width", "mode", "compile s"],
                                 [[r["backend"], str(r["batch_size"]), width_label(r["hidden"]),
                                   str(r.get("compile_mode", "")), f"{r['compile_seconds']:.3g}"] for r in compiled])]
    variants = {r["sgd"] for r in results if r.get("sgd")}
    if variants:
        parts += ["", f"torch's SGD ran as: {', '.join(sorted(variants))}."]
    not_measured = run.get("not_measured") or {}
    for why in dict.fromkeys(not_measured.values()):
        names = ", ".join(name for name, reason in not_measured.items() if reason == why)
        parts += ["", f"Not measured: {names}: {why}."]
    if not machine["gpu"]:
        parts += ["", "No GPU was available to this run: this report holds no GPU figure."]
    parts += ["", "## Correctness", "",
              "Step check: the largest error of the losses and of the weight tensors after "
              f"{run['step_check_steps']} steps on the same batches as NumPy. Loss check: the mean "
              "training loss of the last timed epoch against NumPy's.", "",
              markdown_table(["backend", "batch", "width", "step: loss err", "step: weights err", "step check",
                              "final loss", "vs numpy", "loss check"], correctness_rows(results)),
              "", *profile_section(data, figures), "", "## The textbook's claims", "",
              markdown_table(["claim", "textbook", "measured here"], textbook_claims(data)),
              "", "## Targets", ""]
    parts.append(markdown_table(["target", "verdict", "measured", "explanation (measured)"],
                                [[t["target"], t["verdict"], t["measured"], t["explanation"]]
                                 for t in evaluate_targets(data)]))
    parts += ["", "## Figures", ""]
    for name, caption in (("batch", "Epoch time against batch size"), ("width", "Epoch time against width"),
                          ("speedup", "GPU over NumPy")):
        entry = figures.get(name, {"skipped": "no figures were drawn"})
        if "file" in entry:
            parts += [f"![{caption}]({entry['file']})", ""]
        else:
            parts += [f"- {caption}: not drawn: {entry['skipped']}.", ""]
    return "\n".join(parts).rstrip() + "\n"


# ----------------------------------------------------------------------------- where the time goes

PROFILE_HEADER = ["backend", "batch", "width", "epoch s", *PHASES, "left (Python, dispatch)",
                  "operators / step", "CUDA epoch if launch-bound (prediction)"]


def profile_rows(results):
    body = []
    for r in results:
        profile = r.get("profile")
        if not (profile and timed(r)):
            continue
        head = [r["backend"], str(r["batch_size"]), width_label(r["hidden"]), f"{r['median_s']:.4g}"]
        if "skipped" in profile:
            body.append(head + ["—"] * len(PHASES) + ["—", "—", profile["skipped"]])
            continue
        spent = [f"{profile['phases_s'][name]:.3f}" for name in PHASES]
        ops = fmt(profile.get("ops_per_step"), ".0f")
        if profile.get("kernels_per_step") is not None:
            ops += f" ({profile['kernels_per_step']:.0f} CUDA kernels, counted)"
        prediction = profile.get("cuda_prediction_s")
        predicted = (f"{prediction[0]:.3f}-{prediction[1]:.3f} s ({profile['cuda_launches_per_step']:.0f} launches)"
                     if prediction else "—")
        body.append(head + spent + [f"{profile['left_s']:.3f}", ops, predicted])
    return body


WIDE = 2048  # from this hidden width on, the update of the weights is a visible share of a step


def wide_gap_lines(results):
    """For the wide networks: how far numpy stands above its floor, and which measured phases fill
    the gap (docs/benchmarks.md explains the width-2048 gap from these figures)."""
    lines = []
    for r in results:
        profile = r.get("profile") or {}
        if r["backend"] != "numpy" or not r.get("floor_s") or "phases_s" not in profile or min(r["hidden"]) < WIDE:
            continue
        spent, f = profile["phases_s"], r["floor_s"]
        products = spent["forward products"] + spent["backward products"]
        lines.append(f"- numpy at {width_label(r['hidden'])}, batch {r['batch_size']}: {r['median_s'] / f:.2f}x its "
                     f"floor ({r['median_s']:.3g} s against {f:.3g} s); in the step the products take "
                     f"{products:.3g} s, "
                     f"the SGD update {spent['optimizer']:.3g} s, elementwise work {spent['elementwise']:.3g} s, "
                     f"left {profile['left_s']:.3g} s.")
    if lines:
        lines = ["", "The wide networks: the update `p -= lr * g` reads and writes every weight through a "
                 "temporary of the weights' size (memory-bound, single-threaded in NumPy), so it does not "
                 "shrink with the batch's share of work or with more BLAS threads, while the products do:", ""] + lines
    return lines


def profile_section(data, figures):
    """The per-phase table, how it was measured, and the stacked-bar figure."""
    results = data["results"]
    body = profile_rows(results)
    if not body:
        return ["## Where the time goes", "", "No record of this run carries a profile."]
    images = sorted({r["profile"]["images"] for r in results if (r.get("profile") or {}).get("images")})
    parts = ["## Where the time goes", "",
             f"Seconds per epoch of 60,000 images, by phase, measured on the first {', '.join(map(str, images))} "
             "images of each configuration and scaled. NumPy: the core's step with a clock "
             "(time.perf_counter) around each phase, the same arithmetic; numpy-minimal and numpy-toolbox "
             "run the same arithmetic, so they carry those phases and their own `left`. torch: torch.profiler "
             "over one epoch on those images, each operator's self time assigned to its phase (forward "
             "products include the bias, which addmm adds). `left` is the timed epoch minus the phases: "
             "Python's calls and the framework's dispatch (negative where the profiled pass ran slower than "
             "the timed epochs).", "", markdown_table(PROFILE_HEADER, body), "",
             f"The last column is a **prediction, not a measurement**: the operators of one step, each a CUDA "
             f"kernel (the optimizer counted as one fused launch), times the steps of an epoch, times "
             f"{LAUNCH_US[0]:g}-{LAUNCH_US[1]:g} µs per launch (benchmarks/phases.py); an eager CUDA epoch at "
             f"batch 64 should take about that long. It is to be checked when a GPU is lent."]
    parts += wide_gap_lines(results)
    entry = figures.get("profile", {"skipped": "no figures were drawn"})
    parts += [""] + ([f"![Where the time goes]({entry['file']})"] if "file" in entry
                     else [f"- Where the time goes: not drawn: {entry['skipped']}."])
    return parts


# ----------------------------------------------------------------------------- files


def write_report(data, out_dir, stem):
    """Write STEM.json, STEM.md and STEM-*.png under out_dir; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    atomic_write(json_path, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode("utf-8")))
    figures = plot_figures(data, out_dir, stem)
    md_path = out_dir / f"{stem}.md"
    entries = {name: {"file": p.name} if isinstance(p, Path) else {"skipped": p}
               for name, p in figures.items()}
    atomic_write(md_path, lambda f: f.write(markdown_report(data, entries).encode("utf-8")))
    return [json_path, md_path] + [p for p in figures.values() if isinstance(p, Path)]

