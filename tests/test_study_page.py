"""The study page (python -m parity --html PATH) as a person sees it: in a real headless browser.

The page is built once by the program itself, then read twice: as text (self-contained, every
figure a number with a verdict) and in Debian's chromium at 1400 px wide through selenium and
chromedriver (no console errors, the two columns side by side, every public function of the
core pair in its row on its side, no horizontal overflow, a screenshot saved). Without chromium
the browser tests skip, except where STUDY_BROWSER_REQUIRED=1 (.ci/run sets it), where a
missing browser fails. STUDY_SCREENSHOT=PATH keeps the screenshot of the top of the page.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WIDTH = 1400
CORE = {"scratch": ROOT / "scratch" / "mlp.py", "torch": ROOT / "torchimpl" / "mlp.py"}


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "study.html"
    result = subprocess.run([sys.executable, "-m", "parity", "--html", str(path), "--steps", "30", "--limit", "1280"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == str(path)
    return path


def public_definitions(path):
    return [node.name for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")]


# ----------------------------------------------------------------------------- the file itself


def test_the_page_fetches_nothing_from_anywhere(page):
    text = page.read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text and "url(" not in text
    external = [m for m in re.findall(r'(?:src|href)="([^"]*)"', text) if not m.startswith("#")]
    assert not external, external


def test_every_figure_on_the_page_is_a_number_with_a_verdict(page):
    figures = re.findall(r'<div class="fig" title="[^"]*"><b>.*?</b> <span class="(ok|fail)">.*?'
                         r'abs ([^,]+), rel ([^,]+), tol ([^<]+)</span>', page.read_text())
    assert len(figures) > 40  # the core rows, finite differences and 14 toolbox pieces
    for verdict, *numbers in figures:
        assert verdict == "ok"
        assert all(re.fullmatch(r"[0-9.e+-]+|reported", n.strip()) for n in numbers), numbers


def test_each_code_cell_names_its_file_and_lines_and_shows_them(page):
    text = page.read_text()
    spans = re.findall(r'<div class="where">([\w/]+\.py):(\d+)-(\d+)</div>', text)
    assert {"scratch/mlp.py", "torchimpl/mlp.py"} <= {path for path, _, _ in spans}
    for path, start, end in spans:
        lines = (ROOT / path).read_text().splitlines()
        assert 1 <= int(start) <= int(end) <= len(lines), (path, start, end)


def test_a_page_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    result = subprocess.run([sys.executable, "-m", "parity", "--html", str(tmp_path / "no" / "page.html")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr.strip().splitlines()[-1]


def test_a_toolbox_flag_is_refused_with_html(tmp_path):
    result = subprocess.run([sys.executable, "-m", "parity", "--html", str(tmp_path / "p.html"), "--batchnorm"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2 and "--batchnorm does not apply to --html" in result.stderr
    assert not (tmp_path / "p.html").exists()


# ----------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("STUDY_BROWSER_REQUIRED") == "1":
            pytest.fail(f"STUDY_BROWSER_REQUIRED=1 but {CHROMIUM} or {CHROMEDRIVER} is missing: "
                        f"apt-get install chromium chromium-driver")
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="study-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--disable-component-update", "--disable-extensions",
                "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",  # nothing may be looked up
                "--force-device-scale-factor=1", f"--window-size={WIDTH},1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)  # no download
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


SETTLE = """const done = arguments[arguments.length - 1];
const go = () => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done, 50)));
if (document.readyState === 'complete') go(); else addEventListener('load', go);"""

LAYOUT = """const box = e => { const r = e.getBoundingClientRect();
  return {top: r.top, left: r.left, right: r.right, width: r.width, height: r.height}; };
const rows = [...document.querySelectorAll('tr[data-key]')].map(tr => ({
  key: tr.dataset.key,
  scratch: {box: box(tr.querySelector('td.scratch')), text: tr.querySelector('td.scratch').innerText},
  torch: {box: box(tr.querySelector('td.torch')), text: tr.querySelector('td.torch').innerText},
  figure: tr.querySelector('td.figure') ? tr.querySelector('td.figure').innerText : null}));
const figures = [...document.querySelectorAll('td.figure')].map(td => td.innerText);  // as rendered, lines kept
const spilling = [...document.querySelectorAll('td pre')].filter(p => p.scrollWidth > p.clientWidth + 1).length;
const d = document.documentElement;
return {rows, figures, spilling, scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, innerWidth};"""


@pytest.fixture(scope="module")
def seen(browser, page):
    browser.get_log("browser")
    browser.get(page.as_uri())
    browser.execute_async_script(SETTLE)
    layout = browser.execute_script(LAYOUT)
    shot = Path(os.environ.get("STUDY_SCREENSHOT") or Path(tempfile.mkdtemp()) / "study-top.png")
    browser.save_screenshot(str(shot))
    return {"logs": browser.get_log("browser"), "layout": layout, "screenshot": shot}


def test_the_page_loads_without_console_errors(seen):
    errors = [entry["message"] for entry in seen["logs"] if entry["level"] == "SEVERE"]
    assert not errors, errors


def test_the_two_columns_of_every_row_stand_side_by_side(seen):
    layout = seen["layout"]
    assert layout["innerWidth"] == WIDTH and layout["rows"]
    for row in layout["rows"]:
        left, right = row["scratch"]["box"], row["torch"]["box"]
        assert abs(left["top"] - right["top"]) < 1, row["key"]  # one vertical position
        assert left["right"] <= right["left"] + 1 and left["width"] > 300 and right["width"] > 300, row["key"]
        assert right["right"] <= layout["clientWidth"], row["key"]


def test_every_public_function_of_the_core_pair_is_in_its_row_on_its_side(seen):
    rows = {row["key"]: row for row in seen["layout"]["rows"]}
    for side, path in CORE.items():
        for name in public_definitions(path):
            assert name in rows, f"{path.name}: {name} has no row"
            cell = rows[name][side]["text"]
            assert re.search(rf"\b(def|class) {name}\b", cell), f"{name} is not in the {side} column"
            assert f"{path.parent.name}/mlp.py:" in cell  # the cell names its file and lines


def test_every_figure_cell_holds_a_number_and_a_verdict(seen):
    cells = seen["layout"]["figures"]  # the core's rows and the toolbox's
    assert len(cells) >= 10 + 14
    for text in cells:
        assert re.search(r"\d", text) and re.search(r"\b(ok|FAIL)\b", text), text


def test_nothing_overflows_sideways(seen):
    layout = seen["layout"]
    assert layout["scrollWidth"] <= layout["clientWidth"], layout["scrollWidth"]
    assert layout["spilling"] == 0, f"{layout['spilling']} code blocks run out of their cells into the next"


def test_a_screenshot_of_the_top_is_saved(seen):
    data = seen["screenshot"].read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") == WIDTH


def test_a_wrong_formula_is_shown_marked_and_the_program_exits_1(tmp_path, monkeypatch, capsys):
    import scratch.mlp
    from parity.__main__ import main
    from wrong_formulas import relu_mask_on_the_wrong_side

    monkeypatch.setattr(scratch.mlp, "relu_backward", relu_mask_on_the_wrong_side)
    path = tmp_path / "broken.html"
    assert main(["--html", str(path), "--steps", "5", "--limit", "640"]) == 1
    assert capsys.readouterr().out.strip() == str(path)  # the page is still written, and said
    text = path.read_text()
    assert 'data-key="relu_backward"' in text and '<tr class="failing" data-key="relu_backward">' in text
    assert '<tr class="failing" data-key="forward">' not in text  # the forward pass is still right
    assert "figures out of tolerance (marked FAIL)" in text


def test_the_aligners_warnings_are_listed_on_the_page():
    from parity import align, study_page

    block = align.Block("lonely", "scratch/mlp.py", 1, 2, "def lonely():\n    pass\n")
    alignment = align.Alignment([align.Section("the network", [align.Row("lonely", block, None)])],
                                ["scratch/mlp.py: lonely (lines 1-2) has no counterpart in torchimpl/mlp.py"])
    text = study_page.render(alignment, {}, {"scratch": [1.0, 0.5], "torch": [1.0, 0.5]}, [], {}, {})
    assert '<div class="warn"><b>Warnings</b>' in text and "lonely (lines 1-2) has no counterpart" in text
    assert '<td class="torch empty">' in text  # the missing twin is an empty cell
