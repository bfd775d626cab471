"""The PNG figures of a run: epoch time against batch size and against width, GPU over NumPy,
and where the time goes (the per-phase profile as stacked bars).

Part of `python -m benchmarks`; drawn with matplotlib's Agg backend (no display needed).
matplotlib comes with the `bench`/`dev` extra and is imported only here, when a figure is drawn.
A figure that the data cannot support is not drawn, and its reason goes into the report: one
batch size or one width gives no curve, and without CUDA records there is no GPU figure at all.
"""

from pathlib import Path

from benchmarks.machine import require
from benchmarks.phases import PHASES
from benchmarks.targets import CUDA_BACKENDS, timed, width_label
from common.outputs import atomic_write

STYLE = {  # backend -> (colour, marker)
    "numpy": ("tab:blue", "o"),
    "torch-cpu": ("tab:orange", "s"),
    "torch-cpu-resident": ("tab:green", "^"),
    "torch-cuda": ("tab:red", "v"),
    "torch-cuda-resident": ("tab:purple", "D"),
    "torch-cuda-graph": ("tab:brown", "P"),
    "numpy-minimal": ("tab:cyan", "x"),
    "numpy-toolbox": ("tab:olive", "*"),
    "sklearn": ("tab:pink", "h"),
}
OTHER_STYLE = ("tab:gray", ".")  # a backend without its own style (a new one) still gets its curve
PHASE_COLOURS = ["tab:purple", "tab:blue", "tab:cyan", "tab:green", "tab:orange", "tab:red", "lightgrey"]

# ----------------------------------------------------------------------------- helpers


def _pyplot():
    matplotlib = require("matplotlib", "draw the benchmark figures (or pass --no-save)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _timed(results):
    return [r for r in results if timed(r)]


def _widths(results):
    """The hidden widths of the run, narrowest network first."""
    return sorted({tuple(r["hidden"]) for r in results}, key=lambda h: (sum(h), h))


def _title(data, what):
    machine = data["machine"]
    where = f"{machine['cpu']}, {machine['cores']} CPUs"
    if machine["gpu"]:
        where = f"{machine['gpu']}; {where}"
    scaled = any("scaled_from" in r for r in data["results"])
    return f"{what}: {where}" + ("\n(* shorter epochs scaled to 60,000 images)" if scaled else "")


def _plain_numbers(plt, ax):
    """Tick labels as 0.5, 2, 100 rather than 5x10^-1; minor ticks labelled on short axes only."""
    label = plt.FuncFormatter(lambda value, _: f"{value:g}")
    low, high = ax.get_ylim()
    ax.yaxis.set_major_formatter(label)
    ax.yaxis.set_minor_formatter(label if high < 20 * low else plt.NullFormatter())


def _save(fig, out_dir, stem, name):
    path = Path(out_dir) / f"{stem}-{name}.png"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


def _panels(plt, count):
    """A row of `count` panels, each the same size, so that every figure of a run reads alike."""
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4), squeeze=False)
    return fig, axes[0]


def _width_positions(results):
    """The widths of the run and each one's x position in a panel against width: evenly spaced by
    rank, as _width_axis ticks them, so that the narrow networks do not crowd together at one end."""
    widths = _widths(results)
    return widths, {hidden: i for i, hidden in enumerate(widths)}


def _width_axis(plt, ax, widths, batch):
    """The axes of a panel against width: the networks evenly spaced by name, a log time axis."""
    ax.set(yscale="log", xlabel="hidden widths", title=f"batch {batch}")
    ax.set_xticks(range(len(widths)), [width_label(h) for h in widths])
    _plain_numbers(plt, ax)


def _finish(fig, axes, ylabel, title, out_dir, stem, name):
    """Label the first panel only (the row shares its y quantity and its backends), title, save."""
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_dir, stem, name)


def _draw_curves(ax, results, x):
    """One panel: each backend's median epoch time against x(record), and NumPy's matmul floor."""
    names = list(STYLE) + sorted({r["backend"] for r in results} - set(STYLE))
    for backend in names:
        colour, marker = STYLE.get(backend, OTHER_STYLE)
        points = sorted((x(r), r["median_s"]) for r in results if r["backend"] == backend)
        if points:
            ax.plot(*zip(*points), color=colour, marker=marker, label=backend)
    floor = sorted((x(r), r["floor_s"]) for r in results if r.get("floor_s"))
    if floor:
        ax.plot(*zip(*floor), color="black", linestyle="--", label="numpy matmul floor")


# ----------------------------------------------------------------------------- figures


def plot_against_batch(plt, data, out_dir, stem):
    results = _timed(data["results"])
    widths = _widths(results)
    fig, axes = _panels(plt, len(widths))
    for ax, hidden in zip(axes, widths):
        _draw_curves(ax, [r for r in results if r["hidden"] == list(hidden)], lambda r: r["batch_size"])
        ax.set(xscale="log", yscale="log", xlabel="batch size", title=f"hidden {width_label(hidden)}")
        ax.set_xticks(sorted({r["batch_size"] for r in results}), minor=False)
        ax.xaxis.set_major_formatter(plt.ScalarFormatter())
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        _plain_numbers(plt, ax)
    return _finish(fig, axes, "seconds per epoch (median)", _title(data, "Epoch time against batch size"),
                   out_dir, stem, "batch")


def plot_against_width(plt, data, out_dir, stem):
    results = _timed(data["results"])
    widths, position = _width_positions(results)
    batches = sorted({r["batch_size"] for r in results})
    fig, axes = _panels(plt, len(batches))
    for ax, batch in zip(axes, batches):
        _draw_curves(ax, [r for r in results if r["batch_size"] == batch], lambda r: position[tuple(r["hidden"])])
        _width_axis(plt, ax, widths, batch)
    return _finish(fig, axes, "seconds per epoch (median)", _title(data, "Epoch time against width"),
                   out_dir, stem, "width")


def plot_speedup(plt, data, out_dir, stem):
    results = _timed(data["results"])
    widths, position = _width_positions(results)
    numpy = {(r["batch_size"], tuple(r["hidden"])): r["median_s"] for r in results if r["backend"] == "numpy"}
    batches = sorted({r["batch_size"] for r in results if r["backend"] in CUDA_BACKENDS})
    fig, axes = _panels(plt, len(batches))
    for ax, batch in zip(axes, batches):
        for backend in CUDA_BACKENDS:
            colour, marker = STYLE.get(backend, OTHER_STYLE)
            points = sorted((position[tuple(r["hidden"])], numpy[batch, tuple(r["hidden"])] / r["median_s"])
                            for r in results if r["backend"] == backend and r["batch_size"] == batch
                            and (batch, tuple(r["hidden"])) in numpy)
            if points:
                ax.plot(*zip(*points), color=colour, marker=marker, label=backend)
        ax.axhline(1, color="grey", linewidth=0.8)
        ax.axhline(100, color="grey", linestyle=":", linewidth=0.8, label="100x")
        _width_axis(plt, ax, widths, batch)
    return _finish(fig, axes, "numpy epoch time / GPU epoch time", _title(data, "GPU over NumPy"),
                   out_dir, stem, "speedup")


def _profiled(results):
    return [r for r in _timed(results) if (r.get("profile") or {}).get("phases_s")]


def plot_profile(plt, data, out_dir, stem):
    """One panel per configuration: a bar per backend, its epoch split into the measured phases
    and `left`, as shares of its own epoch (so that every configuration reads on one scale)."""
    results = _profiled(data["results"])
    configs = list(dict.fromkeys((r["batch_size"], tuple(r["hidden"])) for r in results))
    cols = min(3, len(configs))
    rows = -(-len(configs) // cols)
    bars = max(sum(1 for r in results if (r["batch_size"], tuple(r["hidden"])) == c) for c in configs)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.5 * cols, 8), 1.2 + (0.8 + 0.32 * bars) * rows + 0.9),
                             squeeze=False)
    for ax, (batch, hidden) in zip(axes.flat, configs):
        records = [r for r in results if r["batch_size"] == batch and tuple(r["hidden"]) == hidden]
        for row, r in enumerate(records):
            shares = [r["profile"]["phases_s"][p] / r["median_s"] for p in PHASES]
            shares.append(max(r["profile"]["left_s"], 0.0) / r["median_s"])
            start = 0.0
            for i, (name, share) in enumerate(zip(PHASES + ["left (Python, dispatch)"], shares)):
                ax.barh(row, share, left=start, color=PHASE_COLOURS[i], label=name if row == 0 else None)
                start += share
            ax.text(start + 0.01, row, f"{r['median_s']:.3g} s", va="center", fontsize=7)
        ax.set_yticks(range(len(records)), [r["backend"] for r in records], fontsize=8)
        ax.invert_yaxis()
        widest = max(sum(r["profile"]["phases_s"].values()) / r["median_s"] for r in records)
        ax.set(xlim=(0, max(1.25, widest + 0.2)), xlabel="share of the epoch",
               title=f"{width_label(hidden)}, batch {batch}")
    for ax in list(axes.flat)[len(configs):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(_title(data, "Where the time goes").replace(": ", "\n", 1), fontsize=10)
    fig.tight_layout(rect=(0, 0.12 if rows == 1 else 0.06, 1, 1))
    return _save(fig, out_dir, stem, "profile")


def plot_figures(data, out_dir, stem):
    """Draw what the data supports; return {name: Path of the PNG, or the reason it was not drawn}."""
    results = _timed(data["results"])
    out = {}
    profiled = bool(_profiled(data["results"]))
    if profiled:
        plt = _pyplot()
        try:
            out["profile"] = plot_profile(plt, data, out_dir, stem)
        finally:
            plt.close("all")
    else:
        out["profile"] = "no record of this run carries a profile"
    n_batches = len({r["batch_size"] for r in results})
    n_widths = len({tuple(r["hidden"]) for r in results})
    numpy_configs = {(r["batch_size"], tuple(r["hidden"])) for r in results if r["backend"] == "numpy"}
    has_gpu = any(r["backend"] in CUDA_BACKENDS and (r["batch_size"], tuple(r["hidden"])) in numpy_configs
                  for r in results)
    if n_batches < 2 and n_widths < 2 and not has_gpu:
        reason = "this run measured one configuration (run --sweep for batch sizes and widths)"
        return {**out, "batch": reason, "width": reason, "speedup": _no_gpu_reason(data)}
    plt = _pyplot()
    try:
        out["batch"] = (plot_against_batch(plt, data, out_dir, stem) if n_batches >= 2
                        else "this run measured one batch size (run --sweep)")
        out["width"] = (plot_against_width(plt, data, out_dir, stem) if n_widths >= 2
                        else "this run measured one network width (run --sweep)")
        out["speedup"] = plot_speedup(plt, data, out_dir, stem) if has_gpu else _no_gpu_reason(data)
    finally:
        plt.close("all")
    return out


def _no_gpu_reason(data):
    note = data["machine"].get("cuda_note")
    if note:
        return f"no GPU was measured ({note})"
    return "no CUDA record has a NumPy record at the same configuration to compare with"
