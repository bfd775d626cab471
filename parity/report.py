"""What `python -m parity` prints: the core pair's table, a table per dtype, a one-line summary,
or one JSON object.

Pure formatting of parity.core's records and parity.run's Results; nothing here computes an
error. Try it:
    python -m parity --steps 50 --limit 3200
"""

import json
import math

from common.layout import ACTIVATION_MODULES, OPTIMIZER_CLASSES
from common.presets import DATASETS
from parity.compare import NOISE_DRIVEN, divergence_note

# ----------------------------------------------------------------------------- numbers


def _num(value, as_int=False):
    if value is None:
        return "-"
    if as_int:
        return str(int(value))
    if value == 0:
        return "0"
    return "inf" if math.isinf(value) else f"{value:.1e}"


def _verdict(record):
    if record.tolerance is None:
        return "reported"
    return "ok" if record.ok else "FAIL"


# ----------------------------------------------------------------------------- the table




def describe(config, n_train, n_test, steps):
    """The heading line: the network, the optimizer, the loss, the data and the run's length."""
    net = "-".join(map(str, config.layer_sizes)) + " " + ACTIVATION_MODULES.get(config.activation, config.activation)
    net += " batchnorm" * config.batchnorm + (f" dropout {config.dropout:g}" if config.dropout else "")
    epochs = steps * config.batch_size / n_train
    opt = f"{OPTIMIZER_CLASSES.get(config.optimizer, config.optimizer)} lr {config.lr:g}"
    opt += f" momentum {config.momentum:g}" if config.momentum else ""
    opt += " nesterov" * config.nesterov
    opt += f" weight decay {config.weight_decay:g}" if config.weight_decay else ""
    opt += ", cosine schedule" if config.schedule == "cosine" else ""
    loss = "" if config.loss == "ce" else f", {config.loss} loss"
    noun = DATASETS[config.data].noun
    data = "" if config.data == "mnist" else f"{config.data} data, "
    return (f"parity: {net}, {opt}{loss}, batch {config.batch_size}, seed {config.seed}, "
            f"{data}{n_train} train / {n_test} test {noun}, {steps} steps ({epochs:.2f} epochs)")


LEGEND = ("rel err = max|scratch - torch| / max|torch| per tensor; over training steps, the worst step; "
          "float32 tensors over a run are reported, not checked")
HEADER = (f"  {'check':<16}{'tensor':<23}{'shape':<13}{'max abs err':>12}{'max rel err':>13}"
          f"{'tolerance':>11}  verdict")


def format_record(r):
    counted = r.name == "predictions differing"  # a count of images, not an error
    line = (f"  {r.check:<16}{r.name:<23}{str(r.shape):<13}{_num(r.max_abs_err, counted):>12}"
            f"{_num(r.max_rel_err):>13}{_num(r.tolerance, counted):>11}  {_verdict(r)}")
    extras = [f"{'at' if r.name == 'diverged' else 'worst at'} step {r.step}"] if r.step is not None else []
    extras += [r.note] if r.note else []
    return line + (f"  ({'; '.join(extras)})" if extras else "")


CORE_TITLE = "core pair (scratch/mlp.py vs torchimpl/mlp.py), one batch, float64"


def format_core(records, about=""):
    """The core pair's block (parity/core.py's records): heading, then one line per tensor."""
    return "\n".join([CORE_TITLE + (f": {about}" if about else ""), HEADER, *map(format_record, records)])


def format_result(result):
    """A dtype's block: heading, one line per record, the drift every few steps."""
    title = f"{result.dtype}" + (" (TF32 off)" if result.dtype == "float64" else "")
    lines = [f"{title}, {result.seconds:.1f}s", HEADER, *map(format_record, result.records)]
    if result.drift:
        lines.append("  drift: largest weight error (rel) after step")
        cells = [f"{d['step']:>6} {_num(d['max_rel_err']):>8}" for d in result.drift]
        lines += ["  " + "".join(cells[i:i + 5]) for i in range(0, len(cells), 5)]
    return "\n".join(lines)


def _headline(res):
    """A dtype's figures: worst one-batch error, worst checked (or final) run error, test set."""
    one = max((r for r in res.records if r.check == "one batch"), key=lambda r: r.max_rel_err)
    part = f"{res.dtype}: one batch <= {_num(one.max_rel_err)}"
    if res.diverged:
        return part + f", diverged at step {res.diverged['step']} of {res.steps}"
    trained = [r for r in res.records if r.check.endswith(" steps") and r.tolerance is not None]
    noisy = [r for r in trained if r.note == NOISE_DRIVEN]
    trained = [r for r in trained if r.note != NOISE_DRIVEN]
    if trained:
        part += f", {res.steps} steps <= {_num(max(r.max_rel_err for r in trained))}"
        if noisy:
            part += (f" ({', '.join(r.name for r in noisy)}, moved by rounding noise: "
                     f"<= {_num(max(r.max_rel_err for r in noisy))})")
    elif res.drift:
        part += f", weights {_num(res.drift[-1]['max_rel_err'])} apart after {res.steps} steps (drift)"
    differing = [r for r in res.records if r.name == "predictions differing"]
    if differing:
        part += f", {int(differing[0].max_abs_err)} of {differing[0].shape[0]} test predictions differ"
    if res.accuracy:
        gap = 100 * abs(res.accuracy["scratch"] - res.accuracy["torch"])
        part += (f", test acc {res.accuracy['scratch']:.4f} scratch / {res.accuracy['torch']:.4f} torch "
                 f"({gap:.2f} points apart)")
    return part


def summary(results, core=()):
    """One line: the verdict, how many checks passed (the core pair's records included), the
    core pair's and each dtype's headline figures, failures."""
    checked = [r for res in results for r in res.records if r.tolerance is not None]
    passed = sum(r.ok for r in [*core, *checked])
    verdict = "PASS" if passed == len(core) + len(checked) else "FAIL"
    parts = [f"parity {verdict}: {passed} of {len(core) + len(checked)} checks within tolerance"]
    if core:
        parts.append(f"core pair: one batch and one step <= {_num(max(r.max_rel_err for r in core))}")
    parts += [_headline(res) for res in results]
    failed = [f"core {r.name}" for r in core if not r.ok] + [f"{r.dtype} {r.name}" for r in checked if not r.ok]
    if failed:
        parts.append("failing: " + ", ".join(failed))
    diverged = [res for res in results if res.diverged]
    parts += [f"the {res.dtype} run diverged at step {res.diverged['step']}: {divergence_note(res.diverged)}; "
              f"lower --lr" for res in diverged]
    one_batch_ok = all(r.ok for r in [*core, *checked] if r.check == "one batch")
    if failed and one_batch_ok and not diverged and any(r.check.endswith(" steps") for r in checked if not r.ok):
        parts.append("the one-batch check agrees: if the drift grows step by step, training is "
                     "unstable at this lr and amplifies rounding; try a lower --lr")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- JSON


def _finite_or_none(value):
    """JSON has no inf or NaN: a non-finite error (shape mismatch, NaN) becomes null."""
    return value if value is None or math.isfinite(value) else None


def record_dict(r):
    return {"check": r.check, "name": r.name, "dtype": r.dtype, "shape": list(r.shape),
            "max_abs_err": _finite_or_none(float(r.max_abs_err)),
            "max_rel_err": _finite_or_none(float(r.max_rel_err)),
            "tolerance": r.tolerance, "checked": r.checked, "ok": r.ok,
            "step": r.step, "note": r.note,
            "scale": _finite_or_none(None if r.scale is None else float(r.scale))}


def to_json(config, results, n_train, n_test, core=()):
    """The one JSON object: ok, the configuration, the core pair's records, every record, drift and
    accuracies per dtype."""
    configuration = {"layer_sizes": list(config.layer_sizes), "activation": config.activation,
                     "batchnorm": config.batchnorm, "dropout": config.dropout, "loss": config.loss,
                     "optimizer": config.optimizer, "lr": config.lr,
                     "momentum": config.momentum, "weight_decay": config.weight_decay,
                     "nesterov": config.nesterov, "schedule": config.schedule,
                     "batch_size": config.batch_size, "seed": config.seed,
                     "steps": results[0].steps if results else config.steps, "limit": config.limit,
                     "dtypes": [res.dtype for res in results], "data": config.data,
                     "n_train": n_train, "n_test": n_test}
    return json.dumps({
        "ok": all(res.ok for res in results) and all(r.ok for r in core),
        "config": configuration,
        "core": [record_dict(r) for r in core],
        "records": [record_dict(r) for res in results for r in res.records],
        "drift": {res.dtype: [{**d, "max_abs_err": _finite_or_none(d["max_abs_err"]),
                               "max_rel_err": _finite_or_none(d["max_rel_err"])} for d in res.drift]
                  for res in results},
        "accuracy": {res.dtype: res.accuracy for res in results},
        "diverged": {res.dtype: res.diverged for res in results},  # null, or {"step", "scratch", "torch"}
        "seconds": {res.dtype: round(res.seconds, 3) for res in results},
    })
