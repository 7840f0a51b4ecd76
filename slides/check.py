"""`make slides-check`: the built deck, opened in headless Chromium as a room's laptop would.

    .venv/bin/python slides/check.py

Checks, each printed PASS or FAIL:
- it loads with no request to anything but local files (every other request is
  blocked and named) and no console error;
- it has as many slides as workshop.md, each with its speaker notes, and a
  section heading for every chapter 1-6 (chapters/ch0N_*);
- every image on a slide loaded, and every figure it shows was written by `make figures`
  (figures/made.json names the files each benchmark wrote);
- no slide overflows (its content cut at the bottom or right, or code scrolled sideways),
  and no code block is longer than 14 lines;
- the smallest text on every slide is readable from the back of a room: at least 18 px on
  the 1280x720 slide (code: 16 px), measured as rendered: the HTML's text, the SVG text of
  diagrams at the size the slide shows them, and the plots' smallest font at their displayed
  size (figures.py records each plot's figure width and smallest font in made.json). The
  failure names the slide and the text; `--sizes` prints the table for every slide;
- screenshots of the title slide and the first figure slide go to dist/screenshots/.

Before the deck, the text measure is run on a page made to fail (12 px text, a diagram
with 10 px text): the check that catches small text is itself seen to fail.

Chromium is Debian's (CHROME_PATH, else chromium on PATH), driven by Playwright's
Python package; nothing is downloaded (`playwright install` is never needed).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402  (the deck's own rules: where slides split, which images it shows)

DIST = build.DIST
LOCAL = ("file://", "data:", "about:", "blob:")
SMALLEST_PX, SMALLEST_CODE_PX, CODE_LINES = 18, 16, 14

# Per slide, every run of text as rendered: its font size in slide px (the slide is 1280x720), whether it
# is code, and its words; and each image's displayed box, for the text inside images measured below.
SLIDE_TEXT_JS = """() => [...document.querySelectorAll('svg[data-marpit-svg] > foreignObject > section')].map(section => {
  const scale = section.getBoundingClientRect().width / section.offsetWidth || 1;
  const runs = [];
  const walker = document.createTreeWalker(section, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    const element = node.parentElement, words = node.textContent.trim();
    if (!words || !element || !element.getClientRects().length) continue;
    const style = getComputedStyle(element);
    if (style.visibility === 'hidden') continue;
    // Marp shrinks a code block that is too wide to fit (an SVG around it): the font's rendered size is
    // its computed size times that shrink, the block's drawn width over its laid-out width (a block's:
    // offsetWidth is whole pixels, so a short word's own ratio would be off by a few per cent).
    const box = element.closest('pre, p, li, td, th, h1, h2, h3, h4, h5, h6, footer, header, section');
    const shrink = box && box.offsetWidth ? box.getBoundingClientRect().width / box.offsetWidth / scale : 1;
    runs.push({px: parseFloat(style.fontSize) * shrink, code: !!element.closest('code, pre, marp-pre'),
               text: words.slice(0, 60)});
  }
  const page = getComputedStyle(section, '::after');   // Marp's page number
  if (page.content && !['none', 'normal', '""'].includes(page.content))
    runs.push({px: parseFloat(page.fontSize), code: false, text: 'page number ' + page.content});
  const over = [];
  if (section.scrollHeight > section.clientHeight + 1 || section.scrollWidth > section.clientWidth + 1)
    over.push(`content ${section.scrollWidth}x${section.scrollHeight} px in a ${section.clientWidth}x${section.clientHeight} slide`);
  for (const pre of section.querySelectorAll('pre, marp-pre'))
    if (pre.scrollWidth > pre.clientWidth + 1) over.push(`a code line ${pre.scrollWidth - pre.clientWidth} px too wide`);
  return {
    runs, over,
    code_lines: [...section.querySelectorAll('pre, marp-pre')].map(pre => pre.textContent.replace(/\\n$/, '').split('\\n').length),
    images: [...section.querySelectorAll('img')].map(i => {
      const r = i.getBoundingClientRect();
      return {src: i.getAttribute('src'), width: r.width / scale, height: r.height / scale};
    }),
  };
})"""

# The text of an inline SVG at the box it is shown in: font size x the SVG's scale there (its CTM).
SVG_TEXT_JS = """() => {
  const runs = [];
  const svg = document.querySelector('svg');
  const walker = document.createTreeWalker(svg, NodeFilter.SHOW_TEXT);
  for (let node; (node = walker.nextNode());) {
    const element = node.parentElement, words = node.textContent.trim();
    if (!words || !element || element.closest('style, title, desc')) continue;
    const placed = element instanceof SVGGraphicsElement ? element : element.closest('foreignObject');
    const ctm = placed && placed.getScreenCTM();
    if (!ctm) continue;
    runs.push({px: parseFloat(getComputedStyle(element).fontSize) * Math.hypot(ctm.a, ctm.b), code: false,
               text: words.slice(0, 60)});
  }
  return runs;
}"""


def chapters() -> list[tuple[int, str]]:
    return [(int(path.name[2:4]), path.name) for path in sorted((build.ROOT / "chapters").glob("ch0[1-9]_*"))
            if (path / "README.md").exists()]


def svg_text(page, svg: Path, width: float, height: float) -> list[dict]:
    """The text of `svg` as it renders in a width x height box (an <img>'s: scaled to fit, centred)."""
    page.set_content(f'<body style="margin:0"><div id="box">{svg.read_text()}</div></body>')
    page.evaluate("""([w, h]) => { const s = document.querySelector('svg');
        s.setAttribute('width', w); s.setAttribute('height', h); s.style.maxWidth = 'none'; }""", [width, height])
    return page.evaluate(SVG_TEXT_JS)


def plot_text(record: dict, width: float, src: str) -> list[dict]:
    """A plot's smallest font at its displayed width: pt x displayed px / the figure's width in pt."""
    return [{"px": record["smallest_pt"] * width / record["width_pt"], "code": False,
             "text": f"{record['smallest']!r} in {src}"}]


def measure_text(chrome, html: Path, plots: dict[str, dict]) -> list[dict]:
    """Per slide of the deck at `html`: every text run (HTML, diagrams' SVG, plots), overflow and code lines."""
    page = chrome.new_page(viewport={"width": 1280, "height": 720})
    page.goto(html.as_uri(), wait_until="load")
    page.wait_for_timeout(300)
    slides = page.evaluate(SLIDE_TEXT_JS)
    svg_page = chrome.new_page()
    for slide in slides:
        for image in slide["images"]:
            src, name = image["src"], image["src"].split("/")[-1]
            if src.startswith("figures/"):
                if name in plots:
                    slide["runs"] += plot_text(plots[name], image["width"], src)
                else:
                    slide["runs"].append({"px": 0, "code": False, "text": f"{src} (figures.py recorded no text size for it)"})
            elif src.endswith(".svg"):
                for run in svg_text(svg_page, html.parent / src, image["width"], image["height"]):
                    slide["runs"].append({**run, "text": f"{run['text']!r} in {src}"})
    svg_page.close()
    page.close()
    return slides


def too_small(slide: dict) -> list[dict]:
    return [run for run in slide["runs"] if run["px"] < (SMALLEST_CODE_PX if run["code"] else SMALLEST_PX) - 0.05]


def smallest(slide: dict) -> dict | None:
    return min(slide["runs"], key=lambda run: run["px"], default=None)


def describe(number: int, slide: dict) -> str:
    small = sorted(too_small(slide), key=lambda run: run["px"])
    return (f"slide {number}: " + "; ".join(f"{run['px']:.1f} px {'code ' if run['code'] else ''}{run['text']!r}"
                                             for run in small[:3]) + (f" (and {len(small) - 3} more)" if len(small) > 3 else ""))


def self_test(chrome, folder: Path) -> tuple[bool, str]:
    """A one-slide deck made to fail: 12 px words, 10 px diagram text, a plot shown at 5 px. All three must be named."""
    (folder / "diagrams").mkdir(parents=True, exist_ok=True)
    (folder / "diagrams" / "d.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 200"><text x="10" y="50" font-size="10">tiny node</text>'
        '<text x="10" y="150" font-size="40">big node</text></svg>')
    (folder / "figures").mkdir(exist_ok=True)
    (folder / "figures" / "p.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 720 360"></svg>')
    html = folder / "deck.html"
    html.write_text(
        '<svg data-marpit-svg viewBox="0 0 1280 720" width="1280" height="720"><foreignObject width="1280" height="720">'
        '<section style="width:1280px;height:720px;font-size:25px;overflow:hidden"><h2>Readable</h2>'
        '<p style="font-size:12px">tiny words</p><img src="diagrams/d.svg" style="height:200px">'
        '<img src="figures/p.svg" style="width:360px"></section></foreignObject></svg>')
    slide, = measure_text(chrome, html, {"p.svg": {"width_pt": 720, "smallest_pt": 10, "smallest": "tick label"}})
    named = {run["text"] for run in too_small(slide)}
    expected = {"tiny words", "'tiny node' in diagrams/d.svg", "'tick label' in figures/p.svg"}
    return expected <= named and "Readable" not in named, f"the text check fails a slide made to fail: {describe(1, slide)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slides/check.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", action="store_true", help="print the smallest text on every slide")
    args = parser.parse_args(argv)
    html, deck = DIST / "workshop.html", DIST / "workshop.md"
    if not html.exists():
        raise SystemExit("make slides-check: no slides/dist/workshop.html; run `make slides` first")
    browser = build.chromium()
    if not browser:
        raise SystemExit("make slides-check: no Chromium (CHROME_PATH, or Debian's `apt-get install chromium`)")
    markdown = deck.read_text()
    expected = len(build.slides_of(markdown))
    made = json.loads((build.FIGURES / "made.json").read_text())
    produced = {file for entry in made.values() if isinstance(entry, dict) for file in entry.get("files", [])}

    results: list[tuple[bool, str]] = []
    blocked: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        chrome = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu"])
        results.append(self_test(chrome, DIST / "self-test"))
        page = chrome.new_page(viewport={"width": 1280, "height": 720})

        def route(r):
            if r.request.url.startswith(LOCAL):
                return r.continue_()
            blocked.append(r.request.url)
            return r.abort()

        page.route("**/*", route)
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.as_uri(), wait_until="load")
        page.wait_for_timeout(500)

        results.append((not blocked, f"no request to a non-local URL ({len(blocked)} blocked"
                                     + (f": {', '.join(sorted(set(blocked))[:5])}" if blocked else "") + ")"))
        slides = page.evaluate("document.querySelectorAll('svg[data-marpit-svg] > foreignObject > section').length")
        results.append((slides == expected, f"{slides} slides, workshop.md has {expected}"))
        notes = page.evaluate("[...document.querySelectorAll('.bespoke-marp-note')].filter(n => n.textContent.trim()).length")
        results.append((notes == expected, f"speaker notes on {notes} of {slides} slides"))
        headings = page.evaluate("[...document.querySelectorAll('section h1')].map(h => h.textContent)")
        for number, name in chapters():
            found = [h for h in headings if re.match(rf"Chapter {number}\b", h)]
            results.append((bool(found), f"chapter {number} ({name}) has its section: {found[0] if found else 'none'}"))
        broken = page.evaluate("[...document.querySelectorAll('section img')].filter(i => !i.complete || !i.naturalWidth)"
                               ".map(i => i.getAttribute('src'))")
        shown = build.images(markdown)
        results.append((not broken and shown, f"{len(shown)} images on the slides, {len(broken)} not loaded"
                                              + (f": {', '.join(broken)}" if broken else "")))
        figures = [src.removeprefix("figures/") for src in shown if src.startswith("figures/")]
        unmade = sorted(set(figures) - produced)
        results.append((figures and not unmade, f"{len(set(figures))} figures, each written by `make figures`"
                                                + (f"; not: {', '.join(unmade)}" if unmade else "")))
        results.append((not errors, f"no console error ({len(errors)}" + (f": {errors[0][:200]}" if errors else "") + ")"))

        measured = measure_text(chrome, html, made.get("plots", {}).get("text", {}))
        over = [f"slide {n}: {', '.join(slide['over'])}" for n, slide in enumerate(measured, start=1) if slide["over"]]
        results.append((not over, f"no slide overflows ({len(over)} do" + (f": {'; '.join(over)}" if over else "") + ")"))
        long = [f"slide {n}: {max(slide['code_lines'])} lines" for n, slide in enumerate(measured, start=1)
                if slide["code_lines"] and max(slide["code_lines"]) > CODE_LINES]
        results.append((not long, f"no code block over {CODE_LINES} lines" + (f": {'; '.join(long)}" if long else "")))
        small = [describe(n, slide) for n, slide in enumerate(measured, start=1) if too_small(slide)]
        results.append((not small, f"the smallest text on every slide is at least {SMALLEST_PX} px (code {SMALLEST_CODE_PX} px)"
                                   + (f"; {len(small)} slides are not:\n      " + "\n      ".join(small) if small else "")))
        if args.sizes:
            titles = [next((l.lstrip("# ") for l in slide.splitlines() if l.startswith("#")), "") for slide in build.slides_of(markdown)]
            print("slide | smallest text px | code px | the smallest | title")
            for n, slide in enumerate(measured, start=1):
                least, code = smallest(slide), [r["px"] for r in slide["runs"] if r["code"]]
                print(f"{n} | {least['px']:.1f} | {min(code) if code else 0:.1f} | {least['text'][:50]!r} | {titles[n - 1][:40]}"
                      if least else f"{n} | - | - | - | {titles[n - 1][:40]}")

        shots = DIST / "screenshots"
        shots.mkdir(exist_ok=True)
        first_figure = next(i for i, slide in enumerate(build.slides_of(markdown), start=1) if "figures/" in slide)
        for name, number in (("title", 1), ("figure", first_figure)):
            page.goto(f"{html.as_uri()}#{number}", wait_until="load")
            page.wait_for_timeout(700)   # the bespoke template moves to the slide after load
            page.screenshot(path=str(shots / f"{name}.png"))
        results.append((all((shots / f"{n}.png").stat().st_size > 10_000 for n in ("title", "figure")),
                        f"screenshots: slides/dist/screenshots/title.png (slide 1), figure.png (slide {first_figure})"))
        chrome.close()

    for ok, line in results:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    failed = sum(not ok for ok, _ in results)
    print(f"slides-check: {len(results) - failed} of {len(results)} checks pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
