"""The study page: the core pair in two aligned columns, each row with the figure measured for it.

`python -m parity --html PATH` writes it (parity/__main__.py); parity/align.py pairs the two
core files row by row, parity/study_figures.py measures every row's figure in the same run, and
this file turns the three into one self-contained HTML file: styles inline, Pygments' colours,
the loss curves as inline SVG, nothing fetched from anywhere, so it opens offline.
"""

import ast
import html
import math
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from parity.study_toolbox import flags_text

ROOT = Path(__file__).resolve().parent.parent
FORMATTER = HtmlFormatter(nowrap=True)
PAGE_CSS = """
body { font: 14px/1.45 sans-serif; margin: 0 auto; max-width: 1360px; padding: 12px 16px; color: #1d1d1f; }
h1 { font-size: 24px; margin: 8px 0 4px; } h2 { font-size: 19px; margin: 28px 0 8px; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin: 18px 0 6px; color: #444; }
table.pair { width: 100%; border-collapse: collapse; table-layout: fixed; }
table.pair td, table.pair th { vertical-align: top; border-top: 1px solid #e3e3e3; padding: 4px 6px; }
table.pair th { text-align: left; font-weight: 600; background: #f6f6f6; }
col.code { width: 40.5%; } col.fig { width: 19%; }
pre { margin: 0; font: 11.5px/1.35 monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
.where { font: 11px monospace; color: #777; margin-bottom: 2px; }
.note { font-size: 12px; color: #555; font-style: italic; }
.empty { background: repeating-linear-gradient(45deg, #fafafa, #fafafa 6px, #f0f0f0 6px, #f0f0f0 12px); }
td.figure { font-size: 12px; }
.fig { margin-bottom: 6px; } .fig b { font-weight: 600; }
.num { font-family: monospace; }
.ok { color: #0a7a2f; font-weight: 700; } .fail { color: #b00020; font-weight: 700; }
tr.failing td { background: #fff0f0; }
.warn { background: #fff7e0; border: 1px solid #e6c200; padding: 6px 10px; }
.header { display: flex; gap: 48px; font-size: 12.5px; } .header h3 { margin-top: 6px; }
table.meta td { padding: 0 12px 0 0; vertical-align: top; } table.meta td:first-child { color: #666; }
nav { font-size: 13px; margin: 8px 0; }
.fig[title] { cursor: help; }
.formula { font: 12px monospace; color: #333; margin-top: 4px; }
"""


# ----------------------------------------------------------------------------- pieces of markup


def code(source):
    """Python source, coloured by Pygments (the colours come from its stylesheet, not from here)."""
    return f'<pre class="highlight">{highlight(source, PythonLexer(), FORMATTER).rstrip()}</pre>'


def where(block):
    return f'<div class="where">{html.escape(block.path)}:{block.start}-{block.end}</div>'


def figure_html(figure):
    """One figure: what it is, max abs err, normwise rel err, tolerance, verdict; `what` as tooltip."""
    r = figure.record
    tolerance = "reported" if r.tolerance is None else _number(r.tolerance)
    verdict = '<span class="ok">ok</span>' if r.ok else '<span class="fail">FAIL</span>'
    return (f'<div class="fig" title="{html.escape(figure.what, quote=True)}"><b>{html.escape(r.name)}</b> '
            f'{verdict}<br><span class="num">abs {_number(r.max_abs_err)}, rel {_number(r.max_rel_err)}, '
            f'tol {tolerance}</span></div>')


def _number(value):
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e6):
        return f"{int(value)}"
    return f"{value:.1e}"


def figures_cell(figures):
    if not figures:
        return '<td class="nofigure note">no computation to compare</td>'
    return '<td class="figure">' + "".join(figure_html(f) for f in figures) + "</td>"


def code_cell(block, note="", side=""):
    if block is None:
        inner = f'<div class="note">{html.escape(note)}</div>' if note else ""
        return f'<td class="{side} empty">{inner}</td>'
    return f'<td class="{side}">{where(block)}{code(block.source)}</td>'


def failing(figures):
    return any(not f.record.ok for f in figures)


# ----------------------------------------------------------------------------- the loss curves


def loss_svg(losses, width=1000, height=260):
    """Both cores' loss at every step, on one log-scale axis: in float64 the curves coincide."""
    series = [(name, [float(v) for v in values]) for name, values in losses.items() if len(values)]
    values = [v for _, vs in series for v in vs if v > 0 and math.isfinite(v)]
    if not values:
        return '<p class="note">no losses to draw</p>'
    low, high = math.log10(min(values)), math.log10(max(values))
    high = high if high > low else low + 1
    steps = max(len(vs) for _, vs in series)
    left, right, top, bottom = 60, width - 10, 10, height - 30

    def point(i, v):
        x = left + (right - left) * (i / max(steps - 1, 1))
        y = bottom - (bottom - top) * ((math.log10(max(v, 10 ** low)) - low) / (high - low))
        return f"{x:.1f},{y:.1f}"

    styles = {"scratch": 'stroke="#1f77b4" stroke-width="3"',
              "torch": 'stroke="#ff7f0e" stroke-width="1.2" stroke-dasharray="5,3"'}
    lines = ['<polyline fill="none" ' + styles.get(name, 'stroke="#555"') + ' points="'
             + " ".join(point(i, v) for i, v in enumerate(vs)) + '"/>' for name, vs in series]
    ticks = [f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">{label}</text>'
             for y, label in ((top, f"{10 ** high:.3g}"), (bottom, f"{10 ** low:.3g}"))]
    legend = [f'<text x="{right - 150}" y="{top + 16 + 16 * k}" font-size="12" fill="{c}">{n}</text>'
              for k, (n, c) in enumerate((("scratch (NumPy)", "#1f77b4"), ("torch (dashed)", "#ff7f0e")))]
    axes = (f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>'
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#999"/>'
            f'<text x="{(left + right) / 2}" y="{height - 6}" text-anchor="middle" font-size="12">'
            f'step (1 to {steps}); loss on a log scale</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
            f'role="img" aria-label="loss per step">{axes}{"".join(ticks + lines + legend)}</svg>')


# ----------------------------------------------------------------------------- the toolbox


def definition_source(path, names):
    """[(Block-like dict)] for the top-level definitions `names` in path: source and line span."""
    text = (ROOT / path).read_text()
    lines = text.splitlines()
    found = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in names:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            found[node.name] = (start, node.end_lineno, "\n".join(lines[start - 1:node.end_lineno]))
    missing = [n for n in names if n not in found]
    if missing:
        raise ValueError(f"{path} defines no {', '.join(missing)}")
    return [(path, *found[n]) for n in names]


def toolbox_row(piece):
    blocks = [block for path, names in piece.scratch for block in definition_source(path, names)]
    left = "".join(f'<div class="where">{html.escape(p)}:{a}-{b}</div>{code(src)}' for p, a, b, src in blocks)
    right = (f'{code(piece.torch_code)}<div class="formula">{html.escape(piece.formula)}</div>'
             f'<div class="note">flags: {html.escape(flags_text(piece.flags) or "(defaults)")}</div>')
    cls = ' class="failing"' if failing(piece.figures) else ""
    return (f'<tr{cls} id="piece-{_slug(piece.name)}"><td class="scratch">{left}</td><td class="torch">{right}</td>'
            f'{figures_cell(piece.figures)}</tr>')


def _slug(text):
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


# ----------------------------------------------------------------------------- the page


def render(alignment, figures, losses, pieces, about, machine, fd_figures=()):
    """The whole page as one string. about: what was run (label -> text); machine: label -> text."""
    sections = []
    for section in alignment.sections:
        rows = []
        for row in section.rows:
            found = figures.get(row.key, []) if row.left is not None and row.left.name else []
            cls = ' class="failing"' if failing(found) else ""
            rows.append(f'<tr{cls} data-key="{html.escape(row.key, quote=True)}">'
                        f'{code_cell(row.left, row.note, "scratch")}{code_cell(row.right, row.note, "torch")}'
                        f'{figures_cell(found)}</tr>')
        sections.append(f'<h3 id="core-{_slug(section.title)}">{html.escape(section.title)}</h3>'
                        f'{_table(rows, "scratch/mlp.py (NumPy, by hand)", "torchimpl/mlp.py (PyTorch)")}')
    toolbox = _table([toolbox_row(p) for p in pieces], "scratch/toolbox (by hand)", "the torch code it twins")
    fd = "".join(figure_html(f) for f in fd_figures)
    warnings = ("<div class=\"warn\"><b>Warnings</b><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in alignment.warnings)
                + "</ul></div>") if alignment.warnings else ""
    every = [f for fs in figures.values() for f in fs] + [f for p in pieces for f in p.figures] + list(fd_figures)
    bad = sum(not f.record.ok for f in every)
    verdict = (f'<span class="ok">all {len(every)} figures within tolerance</span>' if not bad
               else f'<span class="fail">{bad} of {len(every)} figures out of tolerance (marked FAIL)</span>')
    toc = ", ".join(f'<a href="#core-{_slug(s.title)}">{html.escape(s.title)}</a>' for s in alignment.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mlp-twins: the twins side by side</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>{PAGE_CSS}{FORMATTER.get_style_defs('.highlight')}</style></head>
<body>
<h1>mlp-twins: the NumPy twin beside the PyTorch twin</h1>
<p>Each function of <code>scratch/mlp.py</code> sits beside its counterpart in <code>torchimpl/mlp.py</code>,
with the agreement measured for exactly that function in the run that wrote this page: max abs err,
normwise rel err max|scratch - torch| / max|torch|, the tolerance and a verdict (hover over a figure to
read what was compared). {verdict}.</p>
<div class="header">{_meta("What was run", about)}{_meta("Machine and versions", machine)}</div>
<nav><b>Contents:</b> <a href="#core">The core pair</a> ({toc}) &middot; <a href="#losses">Both cores' loss
at every step</a> &middot; <a href="#fd">Finite differences</a> &middot; <a href="#toolbox">The toolbox</a></nav>
{warnings}
<h2 id="core">The core pair</h2>
{"".join(sections)}
<h2 id="losses">Both cores' loss at every step</h2>
<p>The same weights, the same batches: in float64 the two curves lie on top of each other.</p>
{loss_svg(losses)}
<h2 id="fd">Finite differences: the oracle that trusts no torch</h2>
<p>The hand backward of <code>scratch/mlp.py</code> against central differences of its own loss.</p>
<div class="figure">{fd}</div>
<h2 id="toolbox">The toolbox</h2>
<p>Each hand-written piece beside the torch module or call it twins and torch's documented formula,
with the piece's own figure from a short float64 parity run.</p>
{toolbox}
</body></html>
"""


def _table(rows, left, right):
    return ('<table class="pair"><colgroup><col class="code"><col class="code"><col class="fig"></colgroup>'
            f'<thead><tr><th>{html.escape(left)}</th><th>{html.escape(right)}</th><th>measured</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _meta(title, items):
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in items.items())
    return f'<div><h3>{html.escape(title)}</h3><table class="meta">{body}</table></div>'
