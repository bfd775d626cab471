"""Running a program's main(argv) in this process, as `python -m module` would, for the tests
of bad input: the exit status, what it printed, and the one-line refusal."""

import importlib

from common.errors import run_cli


def run_program(module, argv, capsys):
    """(exit status, stdout, stderr lines) of `python -m module *argv`, run in this process."""
    main = importlib.import_module(module).main
    try:
        status = run_cli(main, f"python -m {module.removesuffix('.__main__')}", argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err.strip().splitlines()


def assert_refused(result, *phrases):
    """Exit status 2, one line on stderr holding every phrase, no traceback, nothing on stdout."""
    status, out, err = result
    assert status == 2, (status, out, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert out == "", f"work was done before the refusal: {out!r}"
    for phrase in phrases:
        assert phrase in err[0], err[0]
