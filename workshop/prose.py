"""The workshop's prose renders as written: no dollar amounts typeset as math.

    python -m workshop.prose check-dollars [FILE ...]

Jupyter (MathJax) typesets the text between two `$` in one paragraph as LaTeX, and GitHub does
the same with `$...$`: "$0.001 per request plus $0.0002 per station" loses its dollar signs and
runs together in italics. Written `\\$0.001`, a dollar shows as a dollar in both (and in plain
Markdown). The check looks at what a reader opens: README.md, INSTRUCTORS.md, the chapters' Markdown
(README, DEEP_DIVE, INSTRUCTOR_NOTES) and the notebooks' markdown cells (not their code cells), and
fails on any paragraph with two unescaped `$` outside code spans and fenced code, naming the file,
the line and the text between them.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")   # a run of backticks, then text, then the same run
DOLLAR = re.compile(r"(?<!\\)\$")


def prose_files(root: Path = ROOT) -> list[Path]:
    """Every Markdown file a reader opens, and every chapter notebook."""
    files = [root / "README.md", root / "INSTRUCTORS.md", root / "TROUBLESHOOTING.md"]
    files += sorted(root.glob("chapters/*.md")) + sorted(root.glob("chapters/ch[0-9][0-9]_*/*.md"))
    files += sorted(root.glob("chapters/ch[0-9][0-9]_*/*.ipynb"))
    return [f for f in files if f.exists()]


def markdown_of(path: Path) -> list[tuple[str, int]]:
    """(markdown, where it starts) pieces of a file: the whole file, or each markdown cell of a notebook."""
    if path.suffix != ".ipynb":
        return [(path.read_text(), 1)]
    cells = json.loads(path.read_text())["cells"]
    return [("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"], number)
            for number, cell in enumerate(cells, start=1) if cell["cell_type"] == "markdown"]


def paragraphs(markdown: str) -> list[tuple[int, str]]:
    """(first line, text) of each blank-line-separated block outside fenced code, code spans blanked out."""
    blocks, current, start, fence = [], [], 0, None
    for number, line in enumerate(markdown.splitlines(), start=1):
        opened = FENCE.match(line)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            line = ""
        if not line.strip():
            if current:
                blocks.append((start, "\n".join(current)))
            current = []
            continue
        if not current:
            start = number
        current.append(line)
    if current:
        blocks.append((start, "\n".join(current)))
    return [(first, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), text)) for first, text in blocks]


def typeset_dollars(markdown: str) -> list[tuple[int, str]]:
    """(line, text) for each pair of unescaped `$` in one paragraph: what Jupyter or GitHub shows as math."""
    found = []
    for first, text in paragraphs(markdown):
        dollars = [m.start() for m in DOLLAR.finditer(text)]
        for opening, closing in zip(dollars[::2], dollars[1::2]):
            found.append((first + text.count("\n", 0, opening), " ".join(text[opening:closing + 1].split())))
    return found


def check_dollars(files: list[Path], root: Path = ROOT) -> list[str]:
    """One line per dollar pair that would be typeset as math, naming the file, the line (or cell) and the text."""
    problems = []
    for path in files:
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        for markdown, start in markdown_of(path):
            for line, text in typeset_dollars(markdown):
                where = f"cell {start}, line {line}" if path.suffix == ".ipynb" else f"line {line + start - 1}"
                excerpt = text if len(text) <= 70 else text[:33] + " ... " + text[-32:]
                problems.append(f"{shown}, {where}: {excerpt!r} would be typeset as math; write each dollar as \\$")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.prose", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dollars = commands.add_parser("check-dollars", help="fail on $...$ pairs in prose that would render as math")
    dollars.add_argument("files", nargs="*", type=Path, help="default: every README, DEEP_DIVE, note and notebook")
    args = parser.parse_args(argv)
    files = [f.resolve() for f in args.files] or prose_files()
    problems = check_dollars(files)
    for problem in problems:
        print(problem)
    print(f"prose: {len(files)} files, {len(problems)} dollar pairs that would render as math"
          + ("" if not problems else ": escape each dollar as \\$ (it shows as $ in Jupyter, GitHub and plain Markdown)"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
