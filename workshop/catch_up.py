"""Catching up: which earlier exercises are still stubs, and the solutions copied in their place.

An attendee who falls behind should lose a chapter's exercises, not the rest of
the day. Chapter N's code imports the chapters before it, so their stubs would
make chapter N's tests and notebook fail far from the cause (a loop that never
finishes, a NotImplementedError deep in a worker's log). So:

- `unfinished(root, before=N)`: the exercises of chapters 1..N-1 still a stub in
  chapters/ (the `raise NotImplementedError("exercise N.M: ...")` build wrote);
- `refusal(...)`: the one sentence that says which, and the command that fixes it
  (raised by `require_earlier`, which a notebook's `lab.setup(chapter=N)` calls);
- `not_done(stubs)`: the same for the current chapter, per test:
  a test marked `@pytest.mark.exercises("3.3")` fails at once, naming the stub;
- `catch_up(root, N)`: copy the solutions of chapters 1..N-1 into chapters/, each
  file the attendee had first copied to chapters/.backup/<time>/ (nothing lost).

    python -m workshop catch-up N        # or: make catch-up CHAPTER=N
    python -m workshop catch-up --check N   # are chapters 1..N done? (what the benchmarks ask first)
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .exercises import CHAPTER_DIR, HEADER_PREFIX, _source_files, default_root

STUB = re.compile(r"""raise NotImplementedError\(["']exercise (\d+\.\d+)(?:, part \d+ of \d+)?:""")
BACKUP = ".backup"   # under chapters/, outside every chapter folder: build, check and the tests never look there


@dataclass(frozen=True)
class Stub:
    id: str       # "2.1"
    path: Path    # the exercise copy, relative to the root

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0])


def _chapter_folders(root: Path, tree: str) -> dict[int, Path]:
    folders = (p for p in (root / tree).glob("ch[0-9][0-9]_*") if p.is_dir() and CHAPTER_DIR.fullmatch(p.name))
    return {int(p.name[2:4]): p for p in folders}


def unfinished(root: Path | None = None, before: int | None = None) -> list[Stub]:
    """Exercises still a stub in chapters/, of the chapters before `before` (all, if None), in order."""
    root = Path(root or default_root())
    found = []
    for number, folder in sorted(_chapter_folders(root, "chapters").items()):
        if before is not None and number >= before:
            continue
        for path in sorted(folder.rglob("*.py")):
            for match in STUB.finditer(path.read_text(encoding="utf-8", errors="replace")):
                found.append(Stub(match.group(1), path.relative_to(root)))
    return sorted(found, key=lambda s: tuple(map(int, s.id.split("."))))


def _ids(stubs: list[Stub]) -> list[str]:
    """The exercises of these stubs, each once (an exercise in parts has a stub per part)."""
    return list(dict.fromkeys(s.id for s in stubs))


def _where(stubs: list[Stub], exercise: str) -> str:
    """Where exercise `exercise` is still a stub: its file, or its files."""
    paths = list(dict.fromkeys(str(s.path) for s in stubs if s.id == exercise))
    return paths[0] if len(paths) == 1 else ", ".join(paths[:-1]) + " and " + paths[-1]


def refusal(stubs: list[Stub], chapter: int) -> str:
    """One sentence: the earlier exercises left, and the command that copies their solutions."""
    first, others = stubs[0], _ids(stubs)[1:]
    more = f" (and {len(others)} more: {', '.join(others)})" if others else ""
    return (f"Chapter {chapter} builds on the chapters before it, and exercise {first.id} in "
            f"{_where(stubs, first.id)} is not done yet{more}: finish it, or run `make catch-up CHAPTER={chapter}` "
            f"(python -m workshop catch-up {chapter}) to copy in the solutions of chapters 1-{chapter - 1}; your "
            f"files are kept in chapters/{BACKUP}/.")


def not_done(stubs: list[Stub]) -> str:
    """One sentence for a test of the current chapter whose exercises are still stubs: which, and where."""
    first, others = stubs[0], _ids(stubs)[1:]
    more = f" (and {', '.join(others)}, which it needs too)" if others else ""
    return (f"This test checks exercise {first.id} in {_where(stubs, first.id)}, which is still a stub{more}: "
            "fill it in (the chapter's README has hints), then run the tests again.")


class EarlierChapterUnfinished(RuntimeError):
    """An earlier chapter's exercise is still a stub; the message is the one sentence of `refusal`."""


def require_earlier(chapter: int, root: Path | None = None) -> None:
    """Raise EarlierChapterUnfinished unless every exercise of the chapters before `chapter` is done."""
    stubs = unfinished(root, before=chapter)
    if stubs:
        raise EarlierChapterUnfinished(refusal(stubs, chapter))


def catch_up(root: Path | None, chapter: int, stamp: str | None = None) -> tuple[list[Path], Path | None]:
    """Copy the solutions of the chapters before `chapter` into chapters/; returns (files written, backup
    folder). Only files that differ are touched, and each one the attendee had is copied to the backup first.
    Notebooks and READMEs are left alone, as build leaves them: they are the attendee's."""
    root = Path(root or default_root())
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    backup = root / "chapters" / BACKUP / stamp
    written: list[Path] = []
    solutions = _chapter_folders(root, "solutions")
    for number, source_folder in sorted(solutions.items()):
        if number >= chapter:
            continue
        for source in _source_files(source_folder):   # what build copies, and nothing else
            relative = source.relative_to(root / "solutions")
            target = root / "chapters" / relative
            content = source.read_bytes()
            if source.suffix == ".py":
                content = (f"{HEADER_PREFIX}solutions/{relative.as_posix()}, caught up: the solution itself "
                           f"(`python -m workshop catch-up`; yours, if any, is in chapters/{BACKUP}/).\n"
                           ).encode() + content
            if target.exists() and target.read_bytes() == content:
                continue
            if target.exists():
                kept = backup / relative
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(target, kept)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            written.append(target.relative_to(root))
    return written, (backup if backup.exists() else None)


def check_done(root: Path, chapter: int) -> int:
    """0 when chapters 1..`chapter` of chapters/ hold no stub; else 1, and one sentence on stdout."""
    stubs = unfinished(root, before=chapter + 1)
    if not stubs:
        return 0
    others = _ids(stubs)[1:]
    more = f" (and {len(others)} more)" if others else ""
    print(f"catch-up: this measures your chapters 1-{chapter}, and exercise {stubs[0].id} in "
          f"{_where(stubs, stubs[0].id)} is not done yet{more}: finish it, or measure the solutions "
          "(leave WORKSHOP_TARGET unset).")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop catch-up",
                                     description="Copy the solutions of the chapters before N into chapters/.")
    parser.add_argument("chapter", type=int, help="the chapter you want to start (2 to the last)")
    parser.add_argument("--root", help="repository root (default: the one this kit is in)")
    parser.add_argument("--check", action="store_true",
                        help="copy nothing: exit 1, with one sentence, if chapters 1..N of chapters/ hold a stub "
                             "(the benchmarks ask this before they measure your code)")
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else default_root()
    last = max(_chapter_folders(root, "solutions"), default=0)
    if args.check:
        return check_done(root, args.chapter)
    if not 2 <= args.chapter <= last:
        parser.error(f"chapter {args.chapter}: give the chapter you want to start, from 2 to {last} "
                     "(chapter 1 builds on nothing).")
    before = unfinished(root, before=args.chapter)
    written, backup = catch_up(root, args.chapter)
    if not written:
        print(f"catch-up: chapters 1-{args.chapter - 1} already hold their solutions; nothing to do.")
        return 0
    print(f"catch-up: copied the solutions of chapters 1-{args.chapter - 1} into chapters/: {len(written)} files"
          + (f", replacing {len(before)} unfinished exercises ({', '.join(s.id for s in before)})" if before else "")
          + ".")
    if backup:
        print(f"catch-up: your versions of the files it replaced are in {backup.relative_to(root)}/.")
    print(f"catch-up: chapter {args.chapter} is ready to start: its README and notebook are in chapters/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
