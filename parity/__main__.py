"""Run the parity suite: python -m parity [--json] [--dtype float64] [--steps K] [--limit N] ...

First the core pair (parity/core.py: scratch/mlp.py against torchimpl/mlp.py) on the first batch
of MNIST training images in float64, with the run's hidden widths, seed and lr. Then, by
default: the default network (784-128-64-10) on MNIST, one full epoch of SGD (938 steps at
batch 64), in float64 (TF32 off) and then in float32. Every flag of the training programs
(common.cli.add_model_flags) means here what it means there: --activation, --batchnorm,
--dropout P (the same masks handed to both twins), --loss, --optimizer sgd|adam|adamw, --lr,
--momentum, --nesterov, --weight-decay, --schedule cosine (stepped once per epoch of the batch
sequence), plus --steps, --preset NAME (a chapter's example: its network, optimizer and data;
the generated sets run the chapter's whole training, MNIST one epoch) and --plot PATH (both twins'
loss at every step, in each dtype, on one figure: the curves should coincide). Prints the core
pair's table, a table per dtype and a one-line summary, or with --json one JSON object (the core
pair's records under "core"); exits 1 if any tensor is out of tolerance, 2 on bad input. Try it:
    python -m parity --batchnorm --dropout 0.2 --optimizer adamw --schedule cosine --steps 100 --limit 1280
"""

import dataclasses
import json
import math
import sys

from common import cli, outputs
from common.cli import N_CLASSES, N_FEATURES
from common.errors import InputError, run_cli
from common.presets import PRESETS
from parity import core, report
from parity.run import DTYPES, Config, _guarded, check_config, load_data, run

PROG = "python -m parity"


def build_parser():
    """The twins' flags plus --steps; every flag parity takes is added here."""
    parser = cli.Parser(prog=PROG, description=__doc__.splitlines()[0])
    cli.add_model_flags(parser)
    cli.add_preset_flags(parser)
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="write a PNG of both twins' loss at every step, in each dtype")
    parser.add_argument("--html", metavar="PATH", default=None,
                        help="write the study page instead: the core pair side by side, each row with the "
                             "figure measured for it, then the toolbox; one self-contained HTML file "
                             "(takes --dtype, --seed, --limit, --steps, --hidden, --lr, --batch-size)")
    parser.add_argument("--module", metavar="FILE.py:NAME", default=None,
                        help="compare your own PyTorch MLP instead: NAME is a class (built with no arguments) or "
                             "a function returning an nn.Module, in FILE.py or in package.module; its structure is "
                             "read from its forward with torch.fx and its own weights start both twins")
    parser.add_argument("--module-args", metavar="JSON", default=None,
                        help="keyword arguments for --module's class or function, as a JSON object")
    parser.add_argument("--steps", type=cli.positive_int, default=None, metavar="K",
                        help="training steps to compare (default: one epoch of the training images)")
    actions = {action.dest: action for action in parser._actions}
    # The twins train in one dtype (float32 by default); parity checks both unless told.
    actions["dtype"].default = None
    actions["dtype"].help = "check one dtype only (default: float64, then float32)"
    actions["json"].help = "print one JSON object instead of the tables"
    if "schedule" in actions:
        actions["schedule"].help = ("cosine: anneal the lr to 0 over the epochs the run spans, stepped once "
                                    "per epoch of the batch sequence (default: none)")
    return parser


def config_from_args(parser, args):
    """A Config from parsed flags (cli.parse_args has applied the preset and the defaults that
    depend on the optimizer)."""
    return Config(layer_sizes=tuple(cli.layer_sizes(args)), activation=args.activation,
                  batchnorm=args.batchnorm, dropout=args.dropout, loss=args.loss,
                  optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                  nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
                  batch_size=args.batch_size, seed=args.seed, steps=args.steps, limit=args.limit,
                  data_dir=args.data_dir, dtypes=(args.dtype,) if args.dtype else DTYPES, data=args.data)


def check_core_pair(config, train):
    """(records, what was checked): parity/core.py in float64 on the first batch of MNIST training
    images (the run's own when it trains on MNIST), with the run's hidden widths, seed and lr.
    A core that raises is one failing record, as in the run."""
    X, y = train if config.data == "mnist" else core.mnist_batch(config.batch_size, config.data_dir)
    X, y = X[:config.batch_size], y[:config.batch_size]
    sizes = (N_FEATURES, *config.layer_sizes[1:-1], N_CLASSES)
    records, _ = _guarded("one batch", "float64",
                          lambda: (core.check_core(X, y, sizes, config.seed, "float64", config.lr), None))
    about = (f"{'-'.join(map(str, sizes))}, the first {len(X)} training images, seed {config.seed}, "
             f"SGD lr {config.lr:g}")
    return records, about


def plot_losses(results, path, title):
    """Both twins' loss at every step, per dtype, through the training programs' plotter."""
    from common.plot import plot_history

    histories = {f"{twin} {res.dtype}": [{"epoch": step, "train_loss": float(value)}
                                         for step, value in enumerate(res.losses[twin], start=1)]
                 for res in results if res.losses for twin in ("scratch", "torch")}
    plot_history(histories, path, title, x_label="step")


def module_program(args, argv, config, data):
    """python -m parity --module FILE.py:NAME: the reader's own module against the scratch network."""
    from parity import module

    n_train, n_test = len(data[0][0]), len(data[1][0])
    result, config = module.main(args, sys.argv[1:] if argv is None else argv, config, data)
    if args.json:
        out = json.loads(report.to_json(config, result.results, n_train, n_test))
        out.update(module=args.module, mapping=result.mapping, output=result.structure.output,
                   verdicts=result.verdicts)
        print(json.dumps(out))
    else:
        print("\n".join(result.verdicts + [report.summary(result.results)]))
    return 0 if result.ok else 1


def input_files(args):
    """The MNIST files (the core pair reads them whatever --data says), and --module's file."""
    where = (args.module or "").rpartition(":")[0]
    return {**cli.input_files(args, mnist=True), "--module": where if where.endswith(".py") else None}


def main(argv=None):
    parser = build_parser()
    args = cli.parse_args(parser, argv)
    outputs.check_outputs({"--plot": args.plot, "--html": args.html}, input_files(args))  # before any work
    if args.html:
        try:
            import pygments  # noqa: F401  (the page's syntax colouring)
        except ImportError:
            raise InputError("--html needs Pygments: pip install -e '.[study]' (or pip install pygments)") from None
        from parity import study

        failed = study.write_page(args, args.html)
        print(args.html)
        return 1 if failed else 0
    if args.plot:
        from common.plot import require_matplotlib

        require_matplotlib()  # before the run, not after it
    config = config_from_args(parser, args)
    train, test = load_data(config)
    n_train, n_test = len(train[0]), len(test[0])
    if args.steps is None and args.preset and config.data != "mnist":  # the chapter's whole run
        epochs = PRESETS[args.preset].settings.get("epochs", 1)
        config = dataclasses.replace(config, steps=epochs * math.ceil(n_train / config.batch_size))
    if args.module:
        return module_program(args, argv, config, (train, test))
    check_config(config, n_train)  # bad input is refused before anything is printed
    core_records, core_about = check_core_pair(config, train)
    if not args.json:
        print(report.format_core(core_records, core_about) + "\n", flush=True)

    def show(result):  # text mode prints each dtype as soon as it is done
        if result.dtype == config.dtypes[0]:
            print(report.describe(config, n_train, n_test, result.steps) + "\n" + report.LEGEND + "\n")
        print(report.format_result(result) + "\n", flush=True)

    results = run(config, (train, test), on_result=None if args.json else show)
    print(report.to_json(config, results, n_train, n_test, core_records) if args.json
          else report.summary(results, core_records))
    if args.plot:
        plot_losses(results, args.plot, report.describe(config, n_train, n_test, results[0].steps))
    return 0 if all(res.ok for res in results) and all(r.ok for r in core_records) else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main, PROG))
