"""Training curves as a PNG: per-epoch training loss beside test accuracy (or test MSE).

`--plot PATH` on both training programs calls plot_history with one run; parity can pass both
twins' histories to draw them on one figure, where they should coincide. matplotlib is an
optional dependency (the dev and bench extras): it is imported only here, only when a plot is
asked for, and drawn with the Agg canvas, so no window opens and no global backend changes.
"""

import textwrap

from common.errors import InputError

MISSING = "--plot needs matplotlib, which is not installed: pip install matplotlib (or the dev extra)"


def require_matplotlib():
    """Refuse --plot before a long run rather than after it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError(MISSING) from None


def second_panel(histories):
    """The record key drawn on the right: test accuracy, else test MSE, else train accuracy."""
    records = [r for history in histories.values() for r in history]
    for key, label in (("test_acc", "test accuracy"), ("test_mse", "test MSE"), ("train_acc", "train accuracy")):
        if records and all(r.get(key) is not None for r in records):
            return key, label
    return None, None


def plot_history(histories, path, title="", x_label="epoch"):
    """Write a PNG at `path`: training loss per epoch (left) and the second_panel figure
    (right), one line per entry of `histories` ({label: [epoch records]})."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    from common.outputs import atomic_write

    key, label = second_panel(histories)
    fig = Figure(figsize=(10, 4) if key else (5, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if key else 1, squeeze=False)[0]
    styles = ["-", "--", ":", "-."]
    for n, (name, history) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in history]
        axes[0].plot(epochs, [r["train_loss"] for r in history], styles[n % 4], label=name)
        if key:
            axes[1].plot(epochs, [r[key] for r in history], styles[n % 4], label=name)
    axes[0].set(xlabel=x_label, ylabel="training loss", title="training loss")
    if all(r["train_loss"] > 0 for h in histories.values() for r in h):  # log needs positive values
        axes[0].set_yscale("log")
    if key:
        axes[1].set(xlabel="epoch", ylabel=label, title=label)
        if key == "test_mse":
            axes[1].set_yscale("log")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(textwrap.fill(title, 120 if key else 60), fontsize=9)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
