"""`make docs`: every figure the prose quotes from a benchmark, filled from the measured figures.

    python -m workshop.docs build    # fill the figures in README.md, INSTRUCTORS.md, the chapters' Markdown, notebooks
    python -m workshop.docs check    # fail when a file's figures are not what the measured figures give
    python -m workshop.docs list     # every figure name there is, with its value

The numbers come from `slides/figures/values.json`, which `make figures` writes from the benchmarks'
JSON (slides/figures.py, `values()`), the same file the deck is filled from. In the prose a figure is
a span, invisible where the Markdown is rendered (GitHub, Jupyter):

    the loop did <!-- fig: loop.looped.done -->150<!-- /fig --> of ...

`build` rewrites the text between the two marks; a value of several lines (a table) goes between
blank lines, so it renders as a block. `measured.<benchmark>` names when and on what machine a
benchmark measured its figures; each paragraph that quotes figures says it beside them. In a notebook
the spans live in the markdown cells' source. A span naming a figure that does not exist stops the
build, naming the file and the span.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

from .prose import CODE_SPAN, DOLLAR, FENCE, prose_files

ROOT = Path(__file__).resolve().parent.parent
VALUES = Path("slides") / "figures" / "values.json"
SPAN = re.compile(r"<!-- fig: (?P<name>[^\s>]+) -->(?P<text>.*?)<!-- /fig -->", re.S)
OPENING = re.compile(r"<!-- fig:[^>]*-->")


class DocsError(SystemExit):
    def __init__(self, message: str):
        super().__init__(f"make docs: {message}")


def load_values(root: Path = ROOT) -> dict[str, str]:
    path = root / VALUES
    if not path.exists():
        raise DocsError(f"no {VALUES}: run `make figures` (or `python slides/figures.py --replot`) to write it")
    return json.loads(path.read_text())


def shown(value: str) -> str:
    """A value as it stands in the text: a table between blank lines, a dollar escaped (GitHub and Jupyter
    would typeset `$...$` as math; `python -m workshop.prose check-dollars`)."""
    value = DOLLAR.sub(r"\\$", value)
    return f"\n\n{value}\n\n" if "\n" in value else value


def in_code(text: str) -> list[str]:
    """The spans that sit in fenced code or a code span, where Markdown shows a comment as written."""
    found, fence = [], None
    for line in text.splitlines():
        opened = FENCE.match(line)
        if fence or opened:
            found += [m["name"] for m in SPAN.finditer(line)]
            if opened and (not fence or opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence)):
                fence = None if fence else opened.group(1)
            continue
        code = [m.span() for m in CODE_SPAN.finditer(line)]
        found += [m["name"] for m in SPAN.finditer(line) if any(a < m.start() < b for a, b in code)]
    return found


def fill(text: str, values: dict[str, str], where: str) -> tuple[str, int]:
    """`text` with every span's figure as measured, and how many spans it holds."""
    spans = list(SPAN.finditer(text))
    if len(OPENING.findall(text)) != len(spans):
        raise DocsError(f"{where} has a `<!-- fig: name -->` without its `<!-- /fig -->`; close it")
    coded = in_code(text)
    if coded:
        raise DocsError(f"{where}: `<!-- fig: {coded[0]} -->` is inside code, where it would show as written; "
                        "move it out of the backticks or the fence")

    def value(match: re.Match) -> str:
        name = match["name"]
        if name not in values:
            raise DocsError(f"{where}: `<!-- fig: {name} -->` names no measured figure; use a name from "
                            f"{VALUES} (`python -m workshop.docs list`) or add it in slides/figures.py's values()")
        return f"<!-- fig: {name} -->{shown(values[name])}<!-- /fig -->"

    return SPAN.sub(value, text), len(spans)


def _label(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def filled(path: Path, values: dict[str, str], root: Path) -> tuple[str, str, int]:
    """(the file's text now, as it should be, how many figures it quotes)."""
    text = path.read_text()
    label = _label(path, root)
    if path.suffix != ".ipynb":
        new, count = fill(text, values, label)
        return text, new, count
    if "<!-- fig:" not in text:
        return text, text, 0
    nb = nbformat.reads(text, as_version=4)
    count = 0
    for number, cell in enumerate(nb.cells, start=1):
        if cell.cell_type == "markdown":
            cell.source, n = fill(cell.source, values, f"{label}, cell {number}")
            count += n
    return text, nbformat.writes(nb) + "\n", count


def build(root: Path = ROOT) -> dict[str, int]:
    """Fill every file's figures; {file: figures it quotes} for the files that quote any."""
    values = load_values(root)
    counts = {}
    for path in prose_files(root):
        old, new, count = filled(path, values, root)
        if new != old:
            path.write_text(new)
        if count:
            counts[_label(path, root)] = count
    return counts


def check(root: Path = ROOT) -> list[str]:
    """The files whose figures are not what the measured figures give (empty: all current)."""
    values = load_values(root)
    return [_label(path, root) for path in prose_files(root) if len(set(filled(path, values, root)[:2])) == 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.docs", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["build", "check", "list"])
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.command == "list":
        for name, value in sorted(load_values(root).items()):
            print(f"{name}: {value if chr(10) not in value else '(a table)'}")
        return 0
    if args.command == "build":
        counts = build(root)
        for label, count in counts.items():
            print(f"{count:4} {label}")
        print(f"docs: {sum(counts.values())} figures in {len(counts)} files, from {VALUES}")
        return 0
    stale = check(root)
    for label in stale:
        print(f"{label}: its figures are not the measured ones in {VALUES}", file=sys.stderr)
    if stale:
        print("Run `make docs` to fill them in, and commit the result.", file=sys.stderr)
        return 1
    print(f"docs: every quoted figure is as measured ({VALUES})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
