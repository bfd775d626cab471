"""One kind of error for bad input, shown to a user as one line instead of a traceback."""

import sys


class InputError(ValueError):
    """Bad input: a wrong shape, a bad label, a missing or corrupt file, a bad flag value.

    The message names the problem and what to do about it. Programs print it on one line and
    exit non-zero; library callers get an ordinary ValueError they can catch.
    """


def first_line(err):
    """An exception's message as one line: its first non-blank line, or its type's name if it has
    none (the rest of a message is a dump or a stack the one-line error has no room for)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def run_cli(main, prog, argv=None):
    """Run main(argv); turn an InputError (or running out of memory) into 'prog: error: message'
    and exit status 2."""
    try:
        return main(argv)
    except InputError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except MemoryError:  # the sizes were checked beforehand; this is what they could not foresee
        print(f"{prog}: error: out of memory: use narrower layers, smaller batches or fewer examples, "
              f"or a machine with more memory", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
