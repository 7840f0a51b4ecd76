"""The deck's tools: code excerpts that fit a slide, plots that record their text size, and a text check
that fails a slide made to fail (the browser part needs Playwright and a Chromium; skipped without them)."""
import importlib
import sys
from pathlib import Path

import pytest

SLIDES = Path(__file__).resolve().parent.parent / "slides"
sys.path.insert(0, str(SLIDES))
build = importlib.import_module("build")


def test_an_excerpt_shows_the_lines_between_its_anchors_and_marks_what_it_leaves_out():
    shown = build.code('ch01_periodic/pipeline.py run_slice from "start, ids = run.took" to "r.set(key"').splitlines()
    assert shown[0] == "```python" and shown[-1] == "```"
    lines = shown[1:-1]
    assert lines[0] == "..." and lines[-1] == "..."
    assert lines[1].startswith("start, ids = run.took(") and lines[-2].startswith('    r.set(key(day, "cursor")')
    assert "finally:" in lines and len(lines) <= 14


def test_an_excerpt_whose_anchor_is_gone_stops_the_build_naming_it():
    with pytest.raises(SystemExit, match="no line with 'no such line'"):
        build.code('ch01_periodic/pipeline.py run_slice from "no such line" to "r.set("')


def test_a_plot_records_its_width_and_smallest_text():
    pytest.importorskip("matplotlib")
    figures = importlib.import_module("figures")
    from matplotlib.figure import Figure
    figure = Figure(figsize=(10, 3))
    ax = figure.subplots()
    ax.set_xlabel("big", fontsize=20)
    ax.annotate("small note", (0.5, 0.5), fontsize=7)
    for label in ax.get_xticklabels() + ax.get_yticklabels():
        label.set_fontsize(12)
    figure.canvas.draw()   # tick labels exist once drawn
    assert figures.record_text(figure) == {"width_pt": 720.0, "smallest_pt": 7.0, "smallest": "small note"}


def test_the_text_check_names_small_html_diagram_and_plot_text(tmp_path):
    pytest.importorskip("playwright")
    check = importlib.import_module("check")
    browser = build.chromium()
    if not browser:
        pytest.skip("no Chromium (CHROME_PATH or chromium on PATH)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
        try:
            ok, line = check.self_test(chrome, tmp_path)
        finally:
            chrome.close()
    assert ok, line
    assert "12.0 px 'tiny words'" in line and "10.0 px \"'tiny node' in diagrams/d.svg\"" in line
    assert "5.0 px \"'tick label' in figures/p.svg\"" in line and "Readable" not in line
