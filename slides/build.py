"""`make slides`: the deck, built offline from workshop.md, the chapters and the measured figures.

    .venv/bin/python slides/build.py [--no-pdf]

workshop.md is Marp Markdown with five kinds of placeholder, filled here so that
nothing on a slide is typed twice:

    {{ name }}                       a number or table `make figures` measured (figures/values.json)
    {{diagram ch03_signals}}         the chapter README's mermaid diagram (ch01: diagrams/ch01_periodic.mmd), as SVG
    {{code ch03_signals/error_log.py connect}}   a function of the solution, without docstring and exercise marks
    {{code ch01_periodic/pipeline.py run_slice from "start, ids" to "r.set("}}   the part of it from one line to another
    {{line ch05_reporting/reporting.py run_finished.connect}}   the solution's first line holding that text
    {{exercises ch03_signals}} / {{minutes ch03_signals}}       the README's exercise table / its time budget
    {{short ch03_signals}}                                     its share of the 3-hour path (INSTRUCTORS.md)

The result goes to dist/: workshop.md (filled), figures/ and diagrams/ beside it,
workshop.html (Marp, one self-contained file but for those images) and workshop.pdf
when a Chromium is found (CHROME_PATH, else chromium on PATH). Any placeholder left
unfilled, a slide without speaker notes or a missing image stops the build with its name.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SLIDES = ROOT / "slides"
DIST = SLIDES / "dist"
FIGURES = SLIDES / "figures"
BIN = SLIDES / "node_modules" / ".bin"

PLACEHOLDER = re.compile(r"\{\{\s*(?:(diagram|code|line|exercises|minutes|short)\s+)?([^}]*?)\s*\}\}")
MARKS = re.compile(r"^\s*# (>>>|<<<)")   # the exercise generator's markers, not code to show


class BuildError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"make slides: {message}")


# ------------------------------------------------------------------ what placeholders become

def chapter_readme(chapter: str) -> str:
    path = ROOT / "chapters" / chapter / "README.md"
    if not path.exists():
        raise BuildError(f"no chapter {chapter} (chapters/{chapter}/README.md); fix the name in workshop.md")
    return path.read_text()


def diagram_source(chapter: str) -> str:
    own = SLIDES / "diagrams" / f"{chapter}.mmd"
    if own.exists():
        return own.read_text()
    found = re.search(r"^```mermaid\n(.*?)^```", chapter_readme(chapter), re.S | re.M)
    if not found:
        raise BuildError(f"chapters/{chapter}/README.md has no mermaid diagram; add one or slides/diagrams/{chapter}.mmd")
    return found.group(1)


def diagram_origin(chapter: str) -> str:
    own = SLIDES / "diagrams" / f"{chapter}.mmd"
    return str(own.relative_to(ROOT)) if own.exists() else f"chapters/{chapter}/README.md"


EXCERPT = re.compile(r'^(\S+) (\S+)(?: from "([^"]+)" to "([^"]+)")?$')


def excerpt(lines: list[str], start: str, end: str, spec: str) -> list[str]:
    """The lines from the first holding `start` to the next holding `end`, `...` where lines are left out."""
    first = next((i for i, l in enumerate(lines) if start in l), None)
    last = next((i for i, l in enumerate(lines) if first is not None and i >= first and end in l), None)
    if first is None or last is None:
        raise BuildError(f"no line with {start!r} followed by one with {end!r} in the function; fix {{{{code {spec}}}}}")
    kept = lines[first:last + 1]
    indent = len(kept[0]) - len(kept[0].lstrip())   # shown from the first line's depth: narrower on the slide
    kept = [l[indent:] if l[:indent].isspace() else l.lstrip() for l in kept]
    return (["..."] if first else []) + kept + (["..."] if last < len(lines) - 1 else [])


def code(spec: str) -> str:
    parsed = EXCERPT.match(spec)
    if not parsed:
        raise BuildError(f'{{{{code {spec}}}}} is not `code PATH NAME` or `code PATH NAME from "TEXT" to "TEXT"`')
    path, name, start, end = parsed.groups()
    source = (ROOT / "solutions" / path).read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            lines = source.splitlines()[node.lineno - 1 - len(node.decorator_list):node.end_lineno]
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:   # the docstring is what the slide says in words
                first = node.body[0]
                del lines[first.lineno - node.lineno + len(node.decorator_list):
                          first.end_lineno - node.lineno + len(node.decorator_list) + 1]
            lines = [line for line in lines if not MARKS.match(line)]
            if start:   # a slide shows at most ~14 lines: the part the slide is about
                lines = excerpt(lines, start, end, spec)
            return "```python\n" + "\n".join(lines) + "\n```"
    raise BuildError(f"solutions/{path} has no function or class {name!r}; fix {{{{code {spec}}}}} in workshop.md")


def line(spec: str) -> str:
    path, _, text = spec.partition(" ")
    for found in (ROOT / "solutions" / path).read_text().splitlines():
        if text in found:
            return "```python\n" + found.strip() + "\n```"
    raise BuildError(f"solutions/{path} has no line with {text!r}; fix {{{{line {spec}}}}} in workshop.md")


def exercises(chapter: str) -> str:
    section = re.search(r"^## Exercises\n(.*?)^## ", chapter_readme(chapter), re.S | re.M)
    rows = [row for row in (section.group(1) if section else "").splitlines() if row.startswith("|")]
    if len(rows) < 3:
        raise BuildError(f"chapters/{chapter}/README.md has no exercise table under '## Exercises'")
    return "\n".join(rows)


def minutes(chapter: str) -> str:
    found = re.search(r"^## Time budget \((\d+) minutes\)", chapter_readme(chapter), re.M)
    if not found:
        raise BuildError(f"chapters/{chapter}/README.md has no '## Time budget (N minutes)' heading")
    return found.group(1)


def short(chapter: str) -> str:
    """The chapter's share of the 3-hour path, as its README states it (INSTRUCTORS.md has the path)."""
    found = re.search(r"3-hour path[^:]*\): (\d+) minutes", chapter_readme(chapter))
    if not found:
        raise BuildError(f"chapters/{chapter}/README.md does not state its share of the 3-hour path "
                         "('3-hour path (...): N minutes' under its time budget)")
    return found.group(1)


def fill(text: str, values: dict[str, str], diagrams: set[str]) -> str:
    def one(match: re.Match) -> str:
        kind, arg = match.groups()
        if kind == "diagram":
            diagrams.add(arg)
            return f"diagrams/{arg}.svg"
        if kind in ("code", "line", "exercises", "minutes", "short"):
            return {"code": code, "line": line, "exercises": exercises, "minutes": minutes, "short": short}[kind](arg)
        if arg not in values:
            raise BuildError(f"figures/values.json has no {arg!r}: run `make figures` (or fix the name in workshop.md)")
        return values[arg]
    return PLACEHOLDER.sub(one, text)


# ------------------------------------------------------------------ checks on the filled deck

def slides_of(markdown: str) -> list[str]:
    """The slides' Markdown: after the front matter, split at each line that is `---` alone."""
    body = re.sub(r"\A---\n.*?\n---\n", "", markdown, count=1, flags=re.S)
    return re.split(r"^---$", body, flags=re.M)


def check_notes(markdown: str) -> None:
    """Every slide has speaker notes: an HTML comment that is not a Marp directive."""
    directive = re.compile(r"<!--\s*_?(class|paginate|header|footer|color|background\w*|theme|style|size|"
                           r"headingDivider|lang|title)\s*:")
    for number, slide in enumerate(slides_of(markdown), start=1):
        notes = [c for c in re.findall(r"<!--.*?-->", slide, re.S) if not directive.match(c)]
        if not notes:
            title = next((l for l in slide.splitlines() if l.startswith("#")), slide.strip()[:40])
            raise BuildError(f"slide {number} ({title.strip()}) has no speaker notes; add <!-- what to say -->")


def images(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)


# ------------------------------------------------------------------ tools

def chromium() -> str | None:
    return os.environ.get("CHROME_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def node_tool(name: str) -> str:
    tool = BIN / name
    if not tool.exists():
        raise BuildError(f"{tool.relative_to(ROOT)} is missing; run `npm ci --prefix slides` (make slides does)")
    return str(tool)


def render_diagrams(names: set[str], browser: str | None) -> None:
    if not browser:
        raise BuildError("the diagrams need Chromium: install it (Debian: apt-get install chromium) or set CHROME_PATH")
    (DIST / "diagrams").mkdir(parents=True, exist_ok=True)
    puppeteer = DIST / "puppeteer.json"
    puppeteer.write_text(json.dumps({"executablePath": browser, "args": ["--no-sandbox", "--disable-gpu"]}))
    for name in sorted(names):
        source, out = DIST / "diagrams" / f"{name}.mmd", DIST / "diagrams" / f"{name}.svg"
        text = diagram_source(name)
        if out.exists() and source.exists() and source.read_text() == text:
            continue   # drawn from the same source already
        source.write_text(text)
        drawn = subprocess.run([node_tool("mmdc"), "--quiet", "-i", str(source), "-o", str(out), "-p", str(puppeteer),
                                "-c", str(SLIDES / "mermaid.json"), "-b", "white"])
        if drawn.returncode:
            source.unlink()
            raise BuildError(f"mermaid could not draw {name}'s diagram (the error above names the line); "
                             f"fix it where it lives: {diagram_origin(name)}")


def marp(deck: Path, out: Path, browser: str | None, pdf: bool) -> None:
    command = [node_tool("marp"), "--no-stdin", "--html=false", str(deck), "-o", str(out)]
    env = {**os.environ, **({"CHROME_PATH": browser} if browser else {})}
    if pdf:
        command[1:1] = ["--pdf", "--allow-local-files"]
    subprocess.run(command, check=True, env=env, cwd=SLIDES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slides/build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--no-pdf", action="store_true", help="the HTML only")
    args = parser.parse_args(argv)
    values_file = FIGURES / "values.json"
    if not values_file.exists():
        raise BuildError("no measured figures yet (slides/figures/values.json): run `make figures` first (about 6 minutes)")
    values = json.loads(values_file.read_text())
    diagrams: set[str] = set()
    filled = fill((SLIDES / "workshop.md").read_text(), values, diagrams)
    check_notes(filled)
    DIST.mkdir(exist_ok=True)
    shutil.rmtree(DIST / "figures", ignore_errors=True)
    shutil.copytree(FIGURES, DIST / "figures", ignore=shutil.ignore_patterns("*.json"))
    browser = chromium()
    render_diagrams(diagrams, browser)
    missing = [image for image in images(filled) if not (DIST / image).exists()]
    if missing:
        raise BuildError(f"the deck shows {', '.join(missing)}, which no one made: run `make figures`, "
                         "or fix the path in workshop.md")
    deck = DIST / "workshop.md"
    deck.write_text(filled)
    marp(deck, DIST / "workshop.html", browser, pdf=False)
    made = ["workshop.html"]
    if browser and not args.no_pdf:
        marp(deck, DIST / "workshop.pdf", browser, pdf=True)
        made.append("workshop.pdf")
    else:
        print("make slides: no Chromium found (CHROME_PATH or chromium on PATH): HTML only, no PDF")
    print(f"make slides: {len(slides_of(filled))} slides -> " + ", ".join(f"slides/dist/{m}" for m in made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
