"""Run the parity suite: python -m parity [--json] [--dtype float64] [--steps K] [--limit N] ...

By default: the default network (784-128-64-10) on MNIST, one full epoch of SGD (938 steps at
batch 64), in float64 (TF32 off) and then in float32. Prints a table per dtype and a one-line
summary, or with --json one JSON object; exits 1 if any tensor is out of tolerance, 2 on bad
input. The flags are the twins' (common.cli.add_model_flags) plus --steps.
"""

import argparse

from common import cli
from common.errors import InputError, run_cli
from parity import report
from parity.run import DTYPES, Config, load_data, run

PROG = "python -m parity"
DEFAULT_LR = 0.5  # the twins' SGD default

# Twin flags whose non-default values build a network or optimizer parity does not compare yet
# (it compares ReLU layers, cross-entropy and SGD with or without momentum and weight decay).
# A flag missing from the parser is simply not there to refuse.
NOT_COVERED = {"activation": "relu", "batchnorm": False, "dropout": 0.0, "loss": "ce",
               "optimizer": "sgd", "schedule": "none"}


def build_parser():
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    cli.add_model_flags(parser)
    parser.add_argument("--steps", type=cli.positive_int, default=None, metavar="K",
                        help="SGD steps to compare (default: one epoch of the training images)")
    actions = {action.dest: action for action in parser._actions}
    # The twins train in one dtype (float32 by default); parity checks both unless told.
    actions["dtype"].default = None
    actions["dtype"].help = "check one dtype only (default: float64, then float32)"
    actions["json"].help = "print one JSON object instead of the tables"
    for flag in NOT_COVERED.keys() & actions.keys():  # still parsed, to be refused by name
        actions[flag].help = argparse.SUPPRESS
    return parser


def config_from_args(parser, args):
    if hasattr(cli, "finish_args"):  # optimizer-dependent defaults, where the shared CLI has them
        args = cli.finish_args(parser, args)
    for flag, plain in NOT_COVERED.items():
        value = getattr(args, flag, plain)
        if value != plain:
            raise InputError(f"--{flag.replace('_', '-')} {value}: parity compares the plain network "
                             f"(relu, cross-entropy, SGD) only; leave --{flag.replace('_', '-')} out")
    return Config(layer_sizes=tuple(cli.layer_sizes(args)),
                  lr=DEFAULT_LR if args.lr is None else args.lr,
                  momentum=getattr(args, "momentum", 0.0),
                  weight_decay=getattr(args, "weight_decay", 0.0) or 0.0,
                  nesterov=getattr(args, "nesterov", False), batch_size=args.batch_size, seed=args.seed,
                  steps=args.steps, limit=args.limit, data_dir=args.data_dir,
                  dtypes=(args.dtype,) if args.dtype else DTYPES)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    config = config_from_args(parser, args)
    train, test = load_data(config)
    n_train, n_test = len(train[0]), len(test[0])

    def show(result):  # text mode prints each dtype as soon as it is done
        if result.dtype == config.dtypes[0]:
            print(report.describe(config, n_train, n_test, result.steps) + "\n" + report.LEGEND + "\n")
        print(report.format_result(result) + "\n", flush=True)

    results = run(config, (train, test), on_result=None if args.json else show)
    print(report.to_json(config, results, n_train, n_test) if args.json else report.summary(results))
    return 0 if all(res.ok for res in results) else 1


if __name__ == "__main__":
    raise SystemExit(run_cli(main, PROG))
