"""The Markdown report, the terminal table, and the files of a run (JSON, Markdown, PNGs).

Part of `python -m benchmarks`. Everything is computed from the run's JSON object
({"machine", "run", "results"}), so a saved JSON can be turned into a report again:
    python -c "import json, benchmarks.report as r; r.write_report(json.load(open(F)), 'out', 'name')"
"""

import json
from pathlib import Path

from benchmarks.figures import plot_figures
from benchmarks.runner import width_label
from benchmarks.targets import evaluate_targets, find, textbook_claims, timed

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
        ["threads", f"NumPy BLAS {threads['numpy_blas']}, torch {threads['torch']} "
                    f"(interop {threads['torch_interop']}), pinned before timing"],
        ["BLAS", blas],
        ["TF32", f"matmul allow_tf32 {tf32['cuda_matmul_allow_tf32']}, cudnn allow_tf32 "
                 f"{tf32['cudnn_allow_tf32']}, float32_matmul_precision {tf32['float32_matmul_precision']}"],
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
        "- Matmul floor: the NumPy step's matrix products alone (forward, dx, dW per layer, same "
        "shapes, preallocated outputs) over one epoch's worth of steps, in the same run.",
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
    if any("scaled_from" in r for r in results):
        parts += ["", "\\* scaled to 60,000 images from the epoch actually timed: "
                  + ", ".join(sorted({f"{width_label(r['hidden'])} on {r['scaled_from']} images"
                                      for r in results if "scaled_from" in r}))]
    load = (run.get("load_average") or {}).get("before")
    if load is not None and load > 0.5:
        parts += ["", f"**Caution**: the 1-minute load average was {load} when the run started "
                  f"({machine['cpus_available']} CPUs available): other processes were using the CPU, "
                  "so CPU times may be inflated, multi-threaded BLAS most of all."]
    not_measured = run.get("not_measured") or {}
    for why in dict.fromkeys(not_measured.values()):
        names = ", ".join(name for name, reason in not_measured.items() if reason == why)
        parts += ["", f"Not measured: {names}: {why}. This report holds no GPU figure."]
    parts += ["", "## Correctness", "",
              "Step check: the largest error of the losses and of the weight tensors after "
              f"{run['step_check_steps']} steps on the same batches as NumPy. Loss check: the mean "
              "training loss of the last timed epoch against NumPy's.", "",
              markdown_table(["backend", "batch", "width", "step: loss err", "step: weights err", "step check",
                              "final loss", "vs numpy", "loss check"], correctness_rows(results)),
              "", "## The textbook's claims", "",
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


# ----------------------------------------------------------------------------- files


def write_report(data, out_dir, stem):
    """Write STEM.json, STEM.md and STEM-*.png under out_dir; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    figures = plot_figures(data, out_dir, stem)
    md_path = out_dir / f"{stem}.md"
    entries = {name: {"file": p.name} if isinstance(p, Path) else {"skipped": p}
               for name, p in figures.items()}
    md_path.write_text(markdown_report(data, entries), encoding="utf-8")
    return [json_path, md_path] + [p for p in figures.values() if isinstance(p, Path)]

