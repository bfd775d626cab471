"""The two-column alignment of the core pair: every block on its side, on its exact lines, and a
warning for every difference that common/twins.py does not explain."""

import importlib
import inspect
import re
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from common import twins
from parity.align import BANNER, align

ROOT = Path(__file__).resolve().parent.parent
CORE = {"left": ("scratch/mlp.py", "scratch.mlp"), "right": ("torchimpl/mlp.py", "torchimpl.mlp")}
BAR = "# " + "-" * 30 + " "  # a section banner, less its title


@pytest.fixture(scope="module")
def core():
    return align(CORE["left"][0], CORE["right"][0])


def blocks(alignment, side):
    return [getattr(row, side) for section in alignment.sections for row in section.rows
            if getattr(row, side) is not None]


def public_names(module_name):
    """{name: object} for the functions and classes the module defines, by import, not by ast."""
    module = importlib.import_module(module_name)
    return {name: obj for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module_name}


@pytest.mark.parametrize("side", ["left", "right"])
def test_every_public_name_of_the_core_appears_once_on_its_own_side_at_its_own_lines(core, side):
    path, module = CORE[side]
    names = public_names(module)
    other = "right" if side == "left" else "left"
    here = Counter(b.name for b in blocks(core, side) if b.name)
    assert set(here) == set(names) and set(here.values()) == {1}, f"{path}: {here} vs {sorted(names)}"
    for block in blocks(core, side):
        if block.name:
            assert block.path == path
            lines, start = inspect.getsourcelines(names[block.name])  # decorators included
            assert (block.start, block.source) == (start, "".join(lines)), block.name
    assert not any(b.name for b in blocks(core, other) if b.path == path)


def test_a_name_both_core_files_define_shares_one_row_and_is_its_key(core):
    shared = ({b.name for b in blocks(core, "left")} & {b.name for b in blocks(core, "right")}) - {None}
    assert {"init_model", "train_epoch", "evaluate", "main"} <= shared
    paired = [row.key for section in core.sections for row in section.rows
              if row.left and row.right and row.left.name == row.right.name == row.key]
    assert sorted(paired) == sorted(shared)
    for section in core.sections:
        for row in section.rows:
            assert all(b.name in (None, row.key) for b in (row.left, row.right) if b), (section.title, row.key)


def test_a_one_sided_core_name_carries_its_ONE_SIDED_note(core):
    for section in core.sections:
        for row in section.rows:
            for side, cell, other in (("left", row.left, row.right), ("right", row.right, row.left)):
                if cell is not None and cell.name and (other is None or other.name is None):
                    assert row.note == twins.ONE_SIDED[f"{CORE[side][1]}.{cell.name}"]


def test_the_sections_come_in_the_order_of_both_files(core):
    titles = [section.title for section in core.sections]
    for path, _ in CORE.values():
        banners = [m.group(1) for line in (ROOT / path).read_text().splitlines() if (m := BANNER.match(line))]
        assert titles == ["the file"] + banners, path


def test_the_real_core_pair_aligns_without_warnings(core):
    assert core.warnings == []


def test_the_module_headers_share_the_first_row(core):
    first = core.sections[0]
    assert first.title == "the file" and len(first.rows) == 1
    assert all(cell.start == 1 and cell.name is None and "import" in cell.source
               for cell in (first.rows[0].left, first.rows[0].right))


@pytest.mark.parametrize("side", ["left", "right"])
def test_every_block_is_exactly_its_lines_of_the_file_and_the_lines_cover_the_file(core, side):
    path = CORE[side][0]
    lines = (ROOT / path).read_text().splitlines(keepends=True)
    covered = []
    for block in blocks(core, side):
        assert block.path == path and 1 <= block.start <= block.end <= len(lines)
        assert block.source == "".join(lines[block.start - 1:block.end])
        assert lines[block.start - 1].strip() and lines[block.end - 1].strip(), "starts or ends on a blank line"
        covered += range(block.start, block.end + 1)
    assert len(covered) == len(set(covered)), "a line in two blocks"
    assert sorted(covered) == covered, "the column is out of source order"
    missed = [i for i, line in enumerate(lines, 1) if i not in set(covered) and line.strip()]
    assert all(BANNER.match(lines[i - 1].rstrip("\n")) for i in missed), f"lines in no block: {missed}"


# ----------------------------------------------------------------------------- synthetic pairs

def pair(tmp_path, left, right):
    """Two small files in tmp_path, aligned under module names that ONE_SIDED does not list."""
    (tmp_path / "left.py").write_text(textwrap.dedent(left).lstrip("\n"))
    (tmp_path / "right.py").write_text(textwrap.dedent(right).lstrip("\n"))
    return align("left.py", "right.py", "left_twin", "right_twin", root=tmp_path)


def rows_of(alignment, title):
    return next(section.rows for section in alignment.sections if section.title == title)


def cell(block):
    return None if block is None else (block.name, block.start, block.end)


def test_a_function_on_one_side_only_gets_an_empty_cell_and_a_warning_naming_it(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}math

        def f(x):
            return x

        def helper(x):
            return x + 1

        def g(x):
            return x
        """, f"""
        {BAR}math

        def f(x):
            return x

        def g(x):
            return x
        """)
    assert [(r.key, cell(r.left), cell(r.right), r.note) for r in rows_of(a, "math")] == [
        ("f", ("f", 3, 4), ("f", 3, 4), ""),
        ("helper", ("helper", 6, 7), None, ""),
        ("g", ("g", 9, 10), ("g", 6, 7), "")]
    assert a.warnings == ["left.py: helper (lines 6-7) has no counterpart in right.py and is not listed in "
                          "common/twins.py ONE_SIDED"]


def test_a_one_sided_name_listed_in_ONE_SIDED_gets_its_note_and_no_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(twins, "ONE_SIDED", {"right_twin.to_device": "nothing: NumPy stays on the CPU"})
    a = pair(tmp_path, f"""
        {BAR}setup

        def f(x):
            return x
        """, f"""
        {BAR}setup

        def to_device(x):
            return x

        def f(x):
            return x
        """)
    assert [(r.key, cell(r.left), cell(r.right), r.note) for r in rows_of(a, "setup")] == [
        ("to_device", None, ("to_device", 3, 4), "nothing: NumPy stays on the CPU"),
        ("f", ("f", 3, 4), ("f", 6, 7), "")]
    assert a.warnings == []


def test_a_section_on_one_side_only_is_warned_about_and_keeps_its_place(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}one
        def f():
            pass
        {BAR}three
        def h():
            pass
        """, f"""
        {BAR}one
        def f():
            pass
        {BAR}two
        def g():
            pass
        {BAR}three
        def h():
            pass
        """)
    assert [s.title for s in a.sections] == ["one", "two", "three"]
    assert [(cell(r.left), cell(r.right)) for r in rows_of(a, "two")] == [(None, ("g", 5, 6))]
    assert len(a.warnings) == 2 and "right.py: section 'two' (line 4) has no counterpart in left.py" in a.warnings
    assert any("g (lines 5-6) has no counterpart" in w for w in a.warnings)


def test_loose_lines_go_into_the_empty_cell_of_their_sections_first_row(tmp_path, monkeypatch):
    monkeypatch.setattr(twins, "ONE_SIDED", {"left_twin.loss": "F.cross_entropy", "left_twin.grad": "autograd"})
    a = pair(tmp_path, f"""
        {BAR}the loss

        def loss(z, y):
            return z - y

        def grad(z, y):
            return 1
        """, f"""
        {BAR}the loss

        # F.cross_entropy(z, y): the mean of -log softmax(z)[y]
        # over the batch.

        # autograd gives the gradient.

        """)
    rows = rows_of(a, "the loss")
    assert [(r.key, cell(r.left), cell(r.right)) for r in rows] == [
        ("loss", ("loss", 3, 4), (None, 3, 6)), ("grad", ("grad", 6, 7), None)]
    assert rows[0].right.source.startswith("# F.cross_entropy") and rows[0].right.source.endswith("gradient.\n")
    assert a.warnings == []


def test_a_loose_block_without_an_empty_cell_gets_a_row_of_its_own_beside_its_twin(tmp_path):
    a = pair(tmp_path, f"""
        \"\"\"Left.\"\"\"

        import math
        {BAR}the program

        def main():
            return 0


        if __name__ == "__main__":
            raise SystemExit(main())
        """, f"""
        \"\"\"Right.\"\"\"
        import cmath
        {BAR}the program
        def main():
            return 0
        if __name__ == "__main__":
            raise SystemExit(main())
        """)
    assert [(r.key, cell(r.left), cell(r.right)) for r in rows_of(a, "the file")] == [
        ("module docstring, imports", (None, 1, 3), (None, 1, 2))]
    assert [(r.key, cell(r.left), cell(r.right)) for r in rows_of(a, "the program")] == [
        ("main", ("main", 6, 7), ("main", 4, 5)), ('if __name__ == "__main__"', (None, 10, 11), (None, 6, 7))]
    assert a.warnings == []


def test_decorators_belong_to_their_definition_and_banners_to_no_block(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}eval
        @staticmethod
        @property
        def evaluate():
            pass
        """, f"""
        {BAR}eval
        @no_grad()  # no graph to record
        def evaluate():
            pass
        """)
    (row,) = rows_of(a, "eval")
    assert (cell(row.left), cell(row.right)) == (("evaluate", 2, 5), ("evaluate", 2, 4))
    assert row.right.source.startswith("@no_grad()") and not any(
        re.match(r"^# -{20,}", line) for b in (row.left, row.right) for line in b.source.splitlines())


def test_shared_names_in_another_order_keep_the_left_order_and_warn(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}s
        def a(): pass
        def b(): pass
        """, f"""
        {BAR}s
        def b(): pass
        def a(): pass
        """)
    assert [(cell(r.left), cell(r.right)) for r in rows_of(a, "s")] == [
        (("a", 2, 2), ("a", 3, 3)), (("b", 3, 3), ("b", 2, 2))]
    assert len(a.warnings) == 1 and "another order" in a.warnings[0] and "right.py" in a.warnings[0]


def test_a_name_defined_in_another_section_is_warned_about_with_both_sections(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}one
        def f(): pass
        {BAR}two
        """, f"""
        {BAR}one
        {BAR}two
        def f(): pass
        """)
    assert len(a.warnings) == 2
    assert a.warnings[0].startswith("left.py: f (lines 2-2) is in section 'one' but in section 'two' "
                                    "of right.py (lines 3-3)")


def test_a_private_helper_on_one_side_only_gets_its_own_row_and_no_warning(tmp_path):
    a = pair(tmp_path, f"""
        {BAR}s
        def _as_array(x): pass
        def load(): pass
        """, f"""
        {BAR}s
        def load(): pass
        """)
    assert [(r.key, cell(r.left), cell(r.right)) for r in rows_of(a, "s")] == [
        ("_as_array", ("_as_array", 2, 2), None), ("load", ("load", 3, 3), ("load", 2, 2))]
    assert a.warnings == []
