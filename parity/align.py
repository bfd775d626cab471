"""The core pair in two columns: scratch/mlp.py beside torchimpl/mlp.py, row by row.

A study page shows the two files side by side, each scratch block beside the torch block that
does the same thing. align() works the rows out from the source alone (ast and the section
banners; nothing is imported): sections are matched by banner title, and within a section the
definitions both files make share a row. A name one side lacks gets a row with an empty cell
and, when common/twins.py ONE_SIDED lists it, a note saying what stands in its place (a public
name it does not list is warned about: tests/test_twins.py fails on it). Comments and loose
statements fill the empty cells of their section. Every Block gives its exact lines, so a
reader can follow a row into the file. Nothing is rendered here.
    python -c "from parity.align import align; a = align('scratch/mlp.py', 'torchimpl/mlp.py')
               [print(s.title, [row.key for row in s.rows]) for s in a.sections]; print(a.warnings)"
"""

import ast
import io
import re
from dataclasses import dataclass
from pathlib import Path

from common import twins  # twins.ONE_SIDED is looked up at call time: a test can swap it

ROOT = Path(__file__).resolve().parent.parent
BANNER = re.compile(r"^# -{20,} (.+)$")
FILE_SECTION = "the file"  # the title of what comes before the first banner
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
MAIN_GUARD = 'if __name__ == "__main__"'


@dataclass
class Block:
    """A top-level definition (decorators included), or a run of a section's loose lines."""
    name: str | None  # the definition's name; None for loose lines
    path: str  # relative to the repository (or to align's root), e.g. "scratch/mlp.py"
    start: int  # first line, 1-based
    end: int  # last line, inclusive (trailing blank lines excluded)
    source: str  # exactly those lines of the file, each with its newline


@dataclass
class Row:
    key: str  # the shared name, the one-sided name, or a label for loose lines
    left: Block | None
    right: Block | None
    note: str = ""  # for a one-sided name in ONE_SIDED: what stands in its place on the other side


@dataclass
class Section:
    title: str  # the banner's title, or "the file" for what comes before the first banner
    rows: list[Row]


@dataclass
class Alignment:
    sections: list[Section]
    warnings: list[str]  # human-readable one-liners


@dataclass
class _Part:
    """One file's section: its banner's line (0 for "the file"), its blocks in source order, and
    a label for each loose block, keyed by its first line."""
    title: str
    line: int
    blocks: list[Block]
    labels: dict[int, str]


@dataclass
class _File:
    path: str
    module: str
    parts: list[_Part]


def align(left_path, right_path, left_module="scratch.mlp", right_module="torchimpl.mlp", root=None):
    """The rows of the two files, section by section in the left file's order, and a warning for
    every difference that ONE_SIDED does not explain. Relative paths start at root (default: the
    repository), and every Block.path is relative to it."""
    root = Path(root) if root is not None else ROOT
    left, right = _read(left_path, left_module, root), _read(right_path, right_module, root)
    warnings = []
    lparts = _keyed(left.parts, [p.title for p in left.parts], f"{left.path}: section", warnings)
    rparts = _keyed(right.parts, [p.title for p in right.parts], f"{right.path}: section", warnings)
    _warn_order(lparts, rparts, left, right, "sections", warnings)
    sections = []
    for key in _merge(list(lparts), list(rparts)):
        lpart, rpart = lparts.get(key), rparts.get(key)
        for part, this, other in ((lpart, left, right), (rpart, right, left)):
            if part is not None and part.blocks and None in (lpart, rpart):
                warnings.append(f"{this.path}: section '{part.title}' (line {part.line}) "
                                f"has no counterpart in {other.path}")
        rows = _rows(key[0], lpart, rpart, left, right, warnings)
        if rows:
            sections.append(Section(key[0], rows))
    return Alignment(sections, warnings)


def _read(path, module, root):
    """The file cut at its banners into parts, each holding its definitions and loose blocks."""
    full = Path(path) if Path(path).is_absolute() else root / path
    try:
        shown = full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # outside root: the path as given
        shown = Path(path).as_posix()
    text = full.read_text(encoding="utf-8")
    lines = io.StringIO(text).readlines()  # cut at "\n" only, as ast counts lines
    spans = {}  # first line -> (last line, name for a definition, else what the statement is)
    for node in ast.parse(text, filename=shown).body:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        if isinstance(node, DEFINITIONS):
            spans[start] = (_definition_end(lines, node.end_lineno), node.name, None)
        else:
            spans[start] = (node.end_lineno, None, _kind(node, start))
    inside = {i for start, (end, _, _) in spans.items() for i in range(start, end + 1)}
    banners = [(i, m.group(1).strip()) for i, line in enumerate(lines, 1)
               if i not in inside and (m := BANNER.match(line.rstrip("\r\n")))]
    bounds = [(0, FILE_SECTION)] + banners + [(len(lines) + 1, None)]
    parts = [_part(title, line, lines, spans, next_line - 1, shown)
             for (line, title), (next_line, _) in zip(bounds[:-1], bounds[1:])]
    return _File(shown, module, parts)


def _definition_end(lines, end):
    """The last line of a definition: its last statement, or an indented comment after it."""
    i = end  # lines[i] is line i + 1
    while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace() and lines[i].lstrip()[:1] == "#"):
        i += 1
        end = i if lines[i - 1].strip() else end
    return end


def _kind(node, start):
    """What a loose statement is, for the label of a row that holds only loose lines."""
    if (start == 1 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)):
        return "module docstring"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "imports"
    if isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == MAIN_GUARD[3:]:
        return MAIN_GUARD
    return "statements"


def _part(title, line, lines, spans, last, path):
    """Lines line+1..last: the definitions, and between them runs of loose lines (statements and
    comments outside any definition; blank lines inside a run join it, trailing ones do not)."""
    blocks, labels, run, i = [], {}, None, line + 1

    def close():
        if run:
            blocks.append(_block(lines, None, run[0], run[1], path))
            labels[run[0]] = ", ".join(dict.fromkeys(run[2]))

    while i <= last:
        end, name, kind = spans.get(i, (i, None, "comments"))
        if name is not None:
            close()
            run = None
            blocks.append(_block(lines, name, i, end, path))
        elif lines[i - 1].strip():
            run = (run[0], end, run[2] + [kind]) if run else (i, end, [kind])
        i = end + 1
    close()
    return _Part(title, line, blocks, labels)


def _block(lines, name, start, end, path):
    return Block(name, path, start, end, "".join(lines[start - 1:end]))


def _keyed(items, keys, what, warnings):
    """{(key, occurrence): item} in order: a key that repeats still pairs first with first."""
    keyed, seen = {}, {}
    for item, key in zip(items, keys):
        seen[key] = seen.get(key, 0) + 1
        keyed[(key, seen[key])] = item
    warnings += [f"{what} '{key}' appears {n} times; they pair in order" for key, n in seen.items() if n > 1]
    return keyed


def _warn_order(lkeys, rkeys, left, right, what, warnings, where=""):
    lshared, rshared = [k[0] for k in lkeys if k in rkeys], [k[0] for k in rkeys if k in lkeys]
    if lshared != rshared:
        warnings.append(f"{right.path}: the shared {what}{where} come in another order than in {left.path} "
                        f"({', '.join(rshared)} against {', '.join(lshared)}); the rows keep {left.path}'s")


def _merge(left, right):
    """Both key lists in one order: the left one, with each key found only on the right placed
    before the next key on the right that both share (after its right neighbours, or last)."""
    order, shared = list(left), set(left) & set(right)
    for i, key in enumerate(right):
        if key not in shared:
            before = max((order.index(k) for k in right[:i]), default=-1)
            after = next((order.index(k) for k in right[i + 1:] if k in shared), None)
            order.insert(len(order) if after is None else after if after > before else before + 1, key)
    return order


def _rows(title, lpart, rpart, left, right, warnings):
    """One section's rows: the definitions both sides make side by side, a one-sided one alone;
    then each loose block in an empty cell on its side (see _place)."""
    where = f" of section '{title}'"
    defs = {}
    for side, part, file in (("left", lpart, left), ("right", rpart, right)):
        named = [b for b in part.blocks if b.name] if part else []
        defs[side] = _keyed(named, [b.name for b in named], f"{file.path}: definition{where}:", warnings)
    _warn_order(defs["left"], defs["right"], left, right, "names", warnings, where)
    rows = []
    for key in _merge(list(defs["left"]), list(defs["right"])):
        lblock, rblock = defs["left"].get(key), defs["right"].get(key)
        note = ""
        if lblock is None or rblock is None:
            block, this, other = (lblock, left, right) if rblock is None else (rblock, right, left)
            note = twins.ONE_SIDED.get(f"{this.module}.{block.name}", "")
            if not note and not block.name.startswith("_"):  # a private helper needs no twin
                warnings.append(_unpaired(block, title, other))
        rows.append(Row(key[0], lblock, rblock, note))
    for side, part in (("left", lpart), ("right", rpart)):
        for block in part.blocks if part else []:
            if block.name is None:
                _place(rows, side, block, part.labels[block.start])
    return rows


def _unpaired(block, title, other):
    """The warning for a one-sided name that ONE_SIDED does not list."""
    for part in other.parts:
        for twin in part.blocks:
            if twin.name == block.name:
                return (f"{block.path}: {block.name} (lines {block.start}-{block.end}) is in section "
                        f"'{title}' but in section '{part.title}' of {other.path} (lines {twin.start}-"
                        f"{twin.end}); rows pair names within a section only")
    return (f"{block.path}: {block.name} (lines {block.start}-{block.end}) has no counterpart in "
            f"{other.path} and is not listed in common/twins.py ONE_SIDED")


def _place(rows, side, block, label):
    """A loose block goes into the section's first row whose cell on its side is empty, among
    the rows between its side's previous and next blocks (so that each column stays in source
    order); failing that, into a new row of its own right after the previous block's row."""
    cells = [getattr(row, side) for row in rows]
    before = max((i for i, c in enumerate(cells) if c is not None and c.start < block.start), default=-1)
    after = min((i for i, c in enumerate(cells) if c is not None and c.start > block.start), default=len(rows))
    for i in range(before + 1, after if after > before else len(rows)):
        if cells[i] is None:
            setattr(rows[i], side, block)
            return
    row = Row(label, None, None)
    setattr(row, side, block)
    rows.insert(before + 1, row)
