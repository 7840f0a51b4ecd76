"""`make slides-check`: the built deck, opened in headless Chromium as a room's laptop would.

    .venv/bin/python slides/check.py

Checks, each printed PASS or FAIL:
- it loads with no request to anything but local files (every other request is
  blocked and named) and no console error;
- it has as many slides as workshop.md, each with its speaker notes, and a
  section heading for every chapter 1-6 (chapters/ch0N_*);
- every image on a slide loaded, and every figure it shows was written by `make figures`
  (figures/made.json names the files each benchmark wrote);
- screenshots of the title slide and the first figure slide go to dist/screenshots/.

Chromium is Debian's (CHROME_PATH, else chromium on PATH), driven by Playwright's
Python package; nothing is downloaded (`playwright install` is never needed).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build  # noqa: E402  (the deck's own rules: where slides split, which images it shows)

DIST = build.DIST
LOCAL = ("file://", "data:", "about:", "blob:")


def chapters() -> list[tuple[int, str]]:
    return [(int(path.name[2:4]), path.name) for path in sorted((build.ROOT / "chapters").glob("ch0[1-9]_*"))
            if (path / "README.md").exists()]


def main() -> int:
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
