"""The source chapters' examples as presets: the settings of each run and what its chapter reports.

`--preset NAME` on python -m scratch.train and python -m torchimpl.train makes a preset's
settings the defaults of the flags; a flag given explicitly still wins
(`--preset mnist-adamw --dropout 0.2`). The settings are keyed by the flags' argparse names,
so any program with the same flags can apply them (common.cli.parse_args does). The data
sets behind the presets are in DATASETS: MNIST is read from --data-dir, the others are
generated from --seed by common/synthetic.py. Pure Python: neither NumPy nor torch.
"""

from dataclasses import dataclass, field

# ----------------------------------------------------------------------------- data sets


@dataclass(frozen=True)
class Dataset:
    """What a data set fixes about the network and how a run is scored.

    task: "classes" (integer labels, cross-entropy on logits or one-hot targets, accuracy by
    argmax), "binary" (0/1 targets shaped (N, 1), accuracy by thresholding the one output) or
    "regression" (real targets shaped (N, outputs), scored by the mean squared error).
    """

    inputs: int
    outputs: int
    task: str
    noun: str  # what one example is, for the line printed before training
    losses: tuple  # the --loss values that make sense for it
    fresh_rows: int = 0  # regression on fresh data: training rows drawn anew for every epoch
    test_rows: int = 0  # how many test rows a generated data set holds (0: none, or fixed)


ALL_LOSSES = ("ce", "bce", "bce-logits", "mse")

DATASETS = {
    "mnist": Dataset(784, 10, "classes", "images", ALL_LOSSES),
    "edges": Dataset(25, 2, "classes", "patches", ALL_LOSSES),
    "student": Dataset(2, 1, "binary", "students", ("bce", "bce-logits", "mse")),
    "sum": Dataset(10, 1, "regression", "rows", ("mse",), fresh_rows=10_000, test_rows=1_000),
}


def size_text(data, n_train, n_test):
    """'2000 train / 10000 test images', worded for the data set."""
    noun = DATASETS[data].noun
    if DATASETS[data].fresh_rows:
        return f"{n_train} fresh train {noun} every epoch / {n_test} test {noun}"
    if n_test == 0:
        return f"{n_train} train {noun}, no test set"
    return f"{n_train} train / {n_test} test {noun}"


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Probe:
    """Inputs run through the trained model after training, each output printed after `text`.

    reload: first save the model (to --save, or to a temporary file) and load it into a fresh
    model, as the chapter does before predicting.
    """

    inputs: list
    text: str
    reload: bool = False


@dataclass(frozen=True)
class Preset:
    source: str  # the chapter the example comes from
    summary: str  # one line for --help
    settings: dict  # argparse dest -> default value
    chapter_reports: str  # what the chapter prints or states, for the README's table
    probe: Probe | None = None
    variants: tuple = field(default=())  # documented extra flags


PRESETS = {
    "edges": Preset(
        source="NN04: PyTorch basics, the flexible MLP (edge detector from NN03)",
        summary="25-16-8-2 on 200 synthetic 5x5 edge / no-edge patches, SGD lr 0.1, 200 full-batch epochs",
        settings={"data": "edges", "hidden": [16, 8], "activation": "relu", "loss": "ce",
                  "optimizer": "sgd", "lr": 0.1, "batch_size": 200, "epochs": 200, "print_every": 20},
        chapter_reports="no figures: the chapter shows the training loop only"),
    "mnist-sgd": Preset(
        source="Textbook 9.17: the same MLP in PyTorch",
        summary="784-128-64-10 on MNIST, SGD lr 0.5, batch 64, 20 epochs",
        settings={"data": "mnist", "hidden": [128, 64], "activation": "relu", "loss": "ce",
                  "optimizer": "sgd", "lr": 0.5, "batch_size": 64, "epochs": 20},
        chapter_reports="epoch 20: train acc 0.9988, test acc 0.9785"),
    "mnist-adamw": Preset(
        source="Textbook 9.17: 'a more idiomatic version'",
        summary="784-128-64-10 on MNIST, AdamW lr 1e-3 weight decay 1e-4, cosine over 20 epochs "
                "(variants: --dropout 0.2, --batchnorm)",
        settings={"data": "mnist", "hidden": [128, 64], "activation": "relu", "loss": "ce",
                  "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "batch_size": 64, "epochs": 20},
        chapter_reports="no figures; the schedule 'typically buys an extra half percentage point'",
        variants=("--dropout 0.2", "--batchnorm")),
    "mnist-adam": Preset(
        source="Day one, session three: MLPs with PyTorch (before skorch)",
        summary="784-128-10 on MNIST, Adam lr 1e-3, batch 64, 5 epochs",
        settings={"data": "mnist", "hidden": [128], "activation": "relu", "loss": "ce",
                  "optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 5},
        chapter_reports="losses 0.3461, 0.1593, 0.1101, 0.0832, 0.0662; test acc 0.975"),
    "student": Preset(
        source="Making a multi-layer perceptron: pass or fail",
        summary="2-4-1 with a sigmoid output and BCE on the chapter's four students, Adam lr 0.01, "
                "1000 full-batch epochs; saved, loaded, asked about 6 h study and 5 h sleep",
        settings={"data": "student", "hidden": [4], "activation": "relu", "loss": "bce",
                  "optimizer": "adam", "lr": 0.01, "batch_size": 4, "epochs": 1000, "print_every": 100},
        chapter_reports="loss every 100 epochs (figures not shown); outputs 'close to 0 or 1'",
        probe=Probe([[6.0, 5.0]], "pass probability for 6 h study and 5 h sleep", reload=True)),
    "sum": Preset(
        source="CS336 day one: a two-layer MLP learning y = sum(x)",
        summary="10-32-1 learning y = sum(x) under MSE, Adam lr 1e-3, 30 epochs of 100 fresh "
                "batches of 100 rows, x ~ U(-1, 1)",
        settings={"data": "sum", "hidden": [32], "activation": "relu", "loss": "mse",
                  "optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 30},
        chapter_reports="no figures; its loss compares (100, 1) with (100,), which broadcasts to (100, 100)",
        probe=Probe([[0.3] * 10], "prediction for x = (0.3, ..., 0.3), whose sum is 3")),
}


def preset_help():
    """The --preset help text: every name with its one-line summary."""
    return "set the defaults of a chapter's example (explicit flags still win): " + "; ".join(
        f"{name}: {preset.summary}" for name, preset in PRESETS.items())
