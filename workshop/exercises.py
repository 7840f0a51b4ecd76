"""Generate the attendees' exercise code in chapters/ from the reference code in solutions/.

Solutions are the source. An author marks the lines that carry a chapter's lesson
with two comments, each on a line of its own and at the same indentation::

    def next_slice(r, size):
        # >>> exercise 1.2: read the cursor, take the next `size` ids, move the cursor atomically
        cursor = int(r.get(CURSOR) or 0)
        ...
        return ids
        # <<<

In the exercise copy the whole region, marker lines included, becomes::

    def next_slice(r, size):
        # exercise 1.2: read the cursor, take the next `size` ids, move the cursor atomically
        raise NotImplementedError("exercise 1.2: read the cursor, take the next `size` ids, move the cursor atomically")

The id is chapter.number (exercise 1.2 lives in solutions/ch01_*), unique in the
whole solutions tree; the hint is one line. An exercise whose idea takes a few
places (define a signal, send it, connect to it) marks each as a part, all of
them, each once: ``# >>> exercise 5.1, part 2 of 3: hint``; its stub says the same. Markers are read from real comments
only (through tokenize), so a marker quoted inside a docstring is left alone.

For every solutions/chNN_name/ folder, each *.py file becomes
chapters/chNN_name/<same path> with a two-line header saying it is generated;
other files (data, .sql) are copied verbatim. README.md at a chapter's top and
notebooks are never copied: those belong to chapters/ and are written by hand,
as is anything else in chapters/ that build did not make. A generated .py whose
solution is gone is stale: build deletes it, check reports it. Output is
deterministic, UTF-8, with '\\n' newlines, so check can compare bytes.

    python -m workshop exercises build|check|list [--root PATH]
"""
from __future__ import annotations

import argparse
import io
import re
import sys
import tokenize
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

BUILD_COMMAND = "python -m workshop exercises build"
HEADER_PREFIX = "# Exercise copy of "
_HEADER_FILL = ('# Fill in each region marked "exercise N.M"; '
                "run this chapter's tests with --target chapters to check it.")
_HEADER_NOTHING_TO_FILL = ("# Nothing to fill in here; it is part of the chapter's code. "
                           "Change the solution, not this copy.")

CHAPTER_DIR = re.compile(r"ch(\d\d)_[a-z0-9_]+")
_LOOKS_LIKE_CHAPTER = re.compile(r"(?i)ch\d")
EXERCISE_ID = re.compile(r"(0|[1-9]\d*)\.([1-9]\d*)")
_OPEN_MARK = re.compile(r"#\s*>>>")
_OPEN_FORM = re.compile(r"#\s*>>>\s*exercise\s+(?P<id>[^\s:,]+)"
                        r"(?:\s*,\s*part\s+(?P<part>\d+)\s+of\s+(?P<parts>\d+))?\s*:(?P<hint>.*)")
_CLOSE_MARK = re.compile(r"#\s*<<<")
_MARKER_FORM = '"# >>> exercise N.M: one-line hint" (or "# >>> exercise N.M, part 1 of 2: one-line hint")'

# Lesson files that live only in chapters/; a copy from solutions/ would overwrite them.
_NEVER_COPIED_AT_CHAPTER_TOP = {"README.md"}
_NEVER_COPIED_SUFFIXES = {".ipynb", ".pyc", ".pyo"}


class ExercisesError(ValueError):
    """solutions/ or chapters/ are in a state build cannot handle; the message says what to do."""


class ExerciseMarkerError(ExercisesError):
    """An exercise marker in a solution file is wrong; the message names file:line and the fix."""


@dataclass(frozen=True)
class Exercise:
    """One marked region: its id ("1.2"), hint, solution file (relative to the root) and line; for an exercise
    in several places, which part of how many (0 of 0: the whole exercise)."""

    id: str
    hint: str
    path: Path
    line: int
    part: int = 0
    parts: int = 0

    @property
    def label(self) -> str:
        """"exercise 1.2", or "exercise 5.1, part 2 of 3": what its stub and its errors call it."""
        return f"exercise {self.id}" + (f", part {self.part} of {self.parts}" if self.parts else "")

    @property
    def chapter(self) -> int:
        return int(self.id.split(".")[0])

    @property
    def number(self) -> int:
        return int(self.id.split(".")[1])

    def sort_key(self) -> tuple[int, int, int, str, int]:
        return (self.chapter, self.number, self.part, self.path.as_posix(), self.line)


# ---------------------------------------------------------------- one file

@dataclass(frozen=True)
class _Marker:
    opens: bool
    line: int
    indent: str
    id: str = ""
    hint: str = ""
    part: int = 0
    parts: int = 0

    @property
    def label(self) -> str:
        return f"exercise {self.id}" + (f", part {self.part} of {self.parts}" if self.parts else "")


def exercise_copy(source_text: str, path_label: str) -> str:
    """Return the exercise copy of one solution file; path_label names it in the header and errors."""
    return _transform(source_text, path_label)[0]


def _transform(source_text: str, path_label: str) -> tuple[str, list[Exercise]]:
    text = _normalise_newlines(source_text)
    lines = text.split("\n")
    markers = _find_markers(text, path_label)
    regions = _pair_markers(markers, path_label)
    exercises = [Exercise(o.id, o.hint, Path(path_label), o.line, o.part, o.parts) for o, _ in regions]
    _refuse_duplicates(exercises)

    body, origin = _replace_regions(lines, regions)
    header = [HEADER_PREFIX + f"{path_label}, made by `{BUILD_COMMAND}`.",
              _HEADER_FILL if regions else _HEADER_NOTHING_TO_FILL]
    result = "\n".join(header + body)
    if not result.endswith("\n"):
        result += "\n"
    _refuse_copy_that_does_not_compile(result, text, origin, path_label)
    return result, exercises


def _normalise_newlines(text: str) -> str:
    # Python reads \r\n and \r as newlines too; the copy always uses \n.
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _find_markers(text: str, label: str) -> list[_Marker]:
    """Every >>> / <<< marker, read from real comment tokens (not strings)."""
    markers = []
    for token in _comment_tokens(text, label):
        comment = token.string
        is_open, is_close = bool(_OPEN_MARK.match(comment)), bool(_CLOSE_MARK.match(comment))
        if not (is_open or is_close):
            continue
        row, col = token.start
        before = token.line[:col]
        if before.strip():
            raise ExerciseMarkerError(
                f"{label}:{row}: this exercise marker shares its line with code; "
                "put it on a line of its own.")
        markers.append(_parse_open(comment, row, before, label) if is_open
                       else _Marker(False, row, before))
    return markers


def _comment_tokens(text: str, label: str) -> list[tokenize.TokenInfo]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as error:
        # The compiler names the real culprit; tokenize often only says "EOF" at the end.
        compile_error = _compile_error(text, label)
        if compile_error is not None:
            raise _does_not_compile(compile_error, label) from None
        row = getattr(error, "lineno", None) or (error.args[1][0] if len(error.args) > 1 else 1)
        reason = error.msg if isinstance(error, SyntaxError) else error.args[0]
        raise ExerciseMarkerError(
            f"{label}:{row}: Python cannot read this file ({reason}); "
            "fix the solution so it runs, then build again.") from None
    return [t for t in tokens if t.type == tokenize.COMMENT]


def _parse_open(comment: str, row: int, indent: str, label: str) -> _Marker:
    form = _OPEN_FORM.fullmatch(comment.rstrip())
    if form is None:
        raise ExerciseMarkerError(
            f"{label}:{row}: this exercise marker is not in the form {_MARKER_FORM}; "
            'rewrite it that way (a comment starting with "# >>>" is always read as a marker).')
    exercise_id, hint = form["id"], form["hint"].strip()
    chapter = _chapter_of(label)
    if not EXERCISE_ID.fullmatch(exercise_id):
        example = f"{chapter}.1" if chapter is not None else "1.2"
        raise ExerciseMarkerError(
            f'{label}:{row}: "{exercise_id}" is not an exercise id; '
            f'write it as chapter.number, like "{example}".')
    if not hint:
        raise ExerciseMarkerError(
            f"{label}:{row}: exercise {exercise_id} has no hint; "
            "write one line after the colon that tells attendees what to do.")
    id_chapter, number = (int(part) for part in exercise_id.split("."))
    if chapter is not None and id_chapter != chapter:
        raise ExerciseMarkerError(
            f"{label}:{row}: exercise {exercise_id} belongs to chapter {id_chapter} "
            f"but this file is in chapter {chapter}; number it {chapter}.{number} "
            "or move it to its chapter.")
    part, parts = int(form["part"] or 0), int(form["parts"] or 0)
    if form["part"] is not None and not 1 <= part <= parts or parts == 1:
        raise ExerciseMarkerError(
            f"{label}:{row}: exercise {exercise_id} says part {part} of {parts}; parts count from 1 up to "
            "their number, and an exercise in one place has no parts.")
    return _Marker(True, row, indent, exercise_id, hint, part, parts)


def _chapter_of(label: str) -> int | None:
    """The chapter number from a chNN_name folder in the path, if there is one."""
    for part in PurePosixPath(label.replace("\\", "/")).parts:
        match = CHAPTER_DIR.fullmatch(part)
        if match:
            return int(match[1])
    return None


def _pair_markers(markers: list[_Marker], label: str) -> list[tuple[_Marker, _Marker]]:
    regions, opened = [], None
    for marker in markers:
        if marker.opens:
            if opened is not None:
                raise ExerciseMarkerError(
                    f"{label}:{marker.line}: exercise {marker.id} is opened inside exercise "
                    f"{opened.id} (opened at line {opened.line}); regions cannot nest, "
                    f'so close exercise {opened.id} with "# <<<" first.')
            opened = marker
        elif opened is None:
            raise ExerciseMarkerError(
                f'{label}:{marker.line}: this "# <<<" closes no exercise; add a '
                f"{_MARKER_FORM} line above its region or delete this line.")
        elif marker.indent != opened.indent:
            raise ExerciseMarkerError(
                f'{label}:{marker.line}: this "# <<<" is {_describe_indent(marker.indent)} '
                f"but exercise {opened.id} (line {opened.line}) is opened "
                f"{_describe_indent(opened.indent)}; indent both markers the same.")
        else:
            regions.append((opened, marker))
            opened = None
    if opened is not None:
        raise ExerciseMarkerError(
            f"{label}:{opened.line}: exercise {opened.id} is opened here but never closed; "
            'add a "# <<<" line at the same indentation after its last line.')
    return regions


def _describe_indent(indent: str) -> str:
    if not indent:
        return "not indented"
    if set(indent) == {" "}:
        return f"indented {len(indent)} space{'s' if len(indent) > 1 else ''}"
    if set(indent) == {"\t"}:
        return f"indented {len(indent)} tab{'s' if len(indent) > 1 else ''}"
    return f"indented {indent!r} (tabs and spaces)"


def _refuse_duplicates(exercises: list[Exercise]) -> None:
    """Each id (each part of an exercise in parts) once, and the parts of one exercise counted alike."""
    first_seen: dict[tuple[str, int], Exercise] = {}
    counted: dict[str, Exercise] = {}
    for exercise in exercises:
        earlier = first_seen.setdefault((exercise.id, exercise.part), exercise)
        if earlier is not exercise:
            raise ExerciseMarkerError(
                f"{exercise.path.as_posix()}:{exercise.line}: {exercise.label} is "
                f"already used at {earlier.path.as_posix()}:{earlier.line}; "
                "give this one a number of its own.")
        other = counted.setdefault(exercise.id, exercise)
        if other.parts != exercise.parts:
            raise ExerciseMarkerError(
                f"{exercise.path.as_posix()}:{exercise.line}: {exercise.label} does not match "
                f"{other.label} at {other.path.as_posix()}:{other.line}; give every part of one exercise "
                '"part K of N" with the same N, or give this one a number of its own.')


def _refuse_missing_parts(exercises: list[Exercise]) -> None:
    """An exercise in parts has all of them (part 1 to N), in the whole tree."""
    parts: dict[str, list[Exercise]] = {}
    for exercise in exercises:
        if exercise.parts:
            parts.setdefault(exercise.id, []).append(exercise)
    for exercise_id, found in parts.items():
        missing = sorted(set(range(1, found[0].parts + 1)) - {e.part for e in found})
        if missing:
            raise ExerciseMarkerError(
                f"{found[0].path.as_posix()}:{found[0].line}: exercise {exercise_id} has {found[0].parts} parts "
                f"but part {', '.join(map(str, missing))} is marked nowhere; mark it, or count the parts again.")


def _replace_regions(lines: list[str], regions: list[tuple[_Marker, _Marker]]
                     ) -> tuple[list[str], list[int]]:
    """The lines with each region swapped for its stub, and each output line's source line."""
    body, origin = [], []
    next_line = 1
    for opening, closing in regions:
        for number in range(next_line, opening.line):
            body.append(lines[number - 1])
            origin.append(number)
        body.extend(_stub(opening))
        origin.extend([opening.line, opening.line])
        next_line = closing.line + 1
    for number in range(next_line, len(lines) + 1):
        body.append(lines[number - 1])
        origin.append(number)
    return body, origin


def _stub(opening: _Marker) -> list[str]:
    message = f"{opening.label}: {opening.hint}"
    return [f"{opening.indent}# {message}",
            f"{opening.indent}raise NotImplementedError({_string_literal(message)})"]


def _string_literal(text: str) -> str:
    """A Python literal for text; repr escapes it safely, double quotes when that needs no escape."""
    literal = repr(text)
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1] + '"'
    return literal


def _refuse_copy_that_does_not_compile(copy: str, source: str, origin: list[int],
                                       label: str) -> None:
    copy_error = _compile_error(copy, label)
    if copy_error is None:
        return
    source_error = _compile_error(source, label)
    if source_error is not None:
        raise _does_not_compile(source_error, label)
    header_lines = 2
    index = _error_line(copy_error) - header_lines - 1
    row = origin[min(max(index, 0), len(origin) - 1)] if origin else 1
    raise ExerciseMarkerError(
        f"{label}:{row}: the exercise copy would not compile ({_error_reason(copy_error)}); "
        "put the markers around whole statements inside a block, not inside an expression.")


def _does_not_compile(error: Exception, label: str) -> ExerciseMarkerError:
    return ExerciseMarkerError(
        f"{label}:{_error_line(error)}: the solution does not compile "
        f"({_error_reason(error)}); fix it, then build again.")


def _compile_error(text: str, label: str) -> SyntaxError | ValueError | None:
    with warnings.catch_warnings():
        # Warnings such as invalid escapes are the solution's business, not build's.
        warnings.simplefilter("ignore")
        try:
            compile(text, label, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as error:  # ValueError: null bytes
            return error
    return None


def _error_line(error: Exception) -> int:
    return getattr(error, "lineno", None) or 1


def _error_reason(error: Exception) -> str:
    return getattr(error, "msg", None) or str(error)


# ---------------------------------------------------------------- the tree

@dataclass(frozen=True)
class _Output:
    """One file build makes in chapters/, with the solution it comes from (paths relative to root)."""

    source: PurePosixPath
    target: PurePosixPath
    content: bytes
    is_python: bool
    exercises: tuple[Exercise, ...]


def list_exercises(root: Path) -> list[Exercise]:
    """Every exercise in root/solutions, by chapter then number (paths relative to root)."""
    exercises = [e for output in _plan(Path(root)) for e in output.exercises]
    return sorted(exercises, key=Exercise.sort_key)


def build(root: Path) -> list[Path]:
    """Bring root/chapters up to date with root/solutions; return the files written or deleted."""
    root = Path(root)
    outputs = _plan(root)
    for output in outputs:
        _refuse_to_overwrite_hand_written(root, output)
    changed = []
    for output in outputs:
        target = root / output.target
        if _read_bytes(target) != output.content:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(output.content)
            changed.append(target)
    for stale in _stale_copies(root, {o.target for o in outputs}):
        path = root / stale
        path.unlink()
        _remove_empty_folders(path.parent, stop_at=root / "chapters")
        changed.append(path)
    return changed


def check(root: Path) -> list[str]:
    """One sentence per way root/chapters differs from what build would make; empty when current."""
    root = Path(root)
    problems = [f"{folder} looks like a chapter but is not named chNN_name "
                "(two digits, lower-case); rename it so its exercises are generated."
                for folder in _misnamed_chapter_folders(root)]
    outputs = _plan(root)
    for output in outputs:
        current = _read_bytes(root / output.target)
        if current is None:
            problems.append(f"{output.target} is missing; run `{BUILD_COMMAND}`.")
        elif current != output.content:
            if output.is_python and not _is_generated(current):
                problems.append(_hand_written_sentence(output))
            else:
                problems.append(f"{output.target} is out of date with {output.source}; "
                                f"run `{BUILD_COMMAND}`.")
    for stale in _stale_copies(root, {o.target for o in outputs}):
        problems.append(f"{stale} was generated from a solution that no longer exists; "
                        f"run `{BUILD_COMMAND}` to delete it.")
    return problems


def _plan(root: Path) -> list[_Output]:
    """Everything build would write, in a fixed order; raises on any marker error in the tree."""
    outputs = []
    for chapter in _chapter_folders(root / "solutions"):
        for source in _source_files(chapter):
            relative = PurePosixPath(source.relative_to(root).as_posix())
            target = PurePosixPath("chapters", *relative.parts[1:])
            outputs.append(_output_for(source, relative, target))
    every = [e for output in outputs for e in output.exercises]
    _refuse_duplicates(every)
    _refuse_missing_parts(every)
    return outputs


def _output_for(source: Path, relative: PurePosixPath, target: PurePosixPath) -> _Output:
    raw = source.read_bytes()
    if source.suffix != ".py":
        return _Output(relative, target, raw, False, ())
    text, exercises = _transform(_decode_python(raw, str(relative)), str(relative))
    return _Output(relative, target, text.encode("utf-8"), True, tuple(exercises))


def _decode_python(raw: bytes, label: str) -> str:
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
        return raw.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as error:
        raise ExerciseMarkerError(
            f"{label}:1: cannot read this file as text ({error}); save it as UTF-8.") from None


def _chapter_folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and CHAPTER_DIR.fullmatch(p.name))


def _misnamed_chapter_folders(root: Path) -> list[str]:
    solutions = root / "solutions"
    if not solutions.is_dir():
        return []
    return sorted(f"solutions/{p.name}" for p in solutions.iterdir()
                  if p.is_dir() and _LOOKS_LIKE_CHAPTER.match(p.name)
                  and not CHAPTER_DIR.fullmatch(p.name))


def _source_files(chapter: Path) -> list[Path]:
    files = []
    for path in chapter.rglob("*"):
        relative = path.relative_to(chapter)
        if not path.is_file() or _is_junk(relative):
            continue
        if relative.suffix in _NEVER_COPIED_SUFFIXES:
            continue
        if len(relative.parts) == 1 and relative.name in _NEVER_COPIED_AT_CHAPTER_TOP:
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.as_posix())


def _is_junk(relative: Path) -> bool:
    # Caches, editor and Jupyter checkpoint folders, .DS_Store: never part of the lesson.
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _stale_copies(root: Path, expected: set[PurePosixPath]) -> list[PurePosixPath]:
    """Generated .py files in chapters/ that no solution makes any more (hand-written ones are kept)."""
    stale = []
    for chapter in _chapter_folders(root / "chapters"):
        for path in sorted(chapter.rglob("*.py"), key=lambda p: p.as_posix()):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if (path.is_file() and not _is_junk(path.relative_to(chapter))
                    and relative not in expected and _is_generated(_first_line(path))):
                stale.append(relative)
    return stale


def _refuse_to_overwrite_hand_written(root: Path, output: _Output) -> None:
    current = _read_bytes(root / output.target)
    if (output.is_python and current is not None and current != output.content
            and not _is_generated(current)):
        raise ExercisesError(_hand_written_sentence(output))


def _hand_written_sentence(output: _Output) -> str:
    return (f"{output.target} was not made by build (it has no generated header) but "
            f"{output.source} would overwrite it; move your file, or delete it if it is an "
            f"old exercise copy, then run `{BUILD_COMMAND}`.")


def _is_generated(content: bytes) -> bool:
    return content.startswith(HEADER_PREFIX.encode() + b"solutions/")


def _first_line(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.readline()


def _read_bytes(path: Path) -> bytes | None:
    return path.read_bytes() if path.is_file() else None


def _remove_empty_folders(folder: Path, stop_at: Path) -> None:
    # Only folders our deletion emptied; stop_at (chapters/) itself always stays.
    while folder != stop_at and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# ---------------------------------------------------------------- command line

def default_root() -> Path:
    """The repository root: the folder that holds the workshop package."""
    return Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    root = Path(args.root) if args.root else default_root()
    if not root.is_dir():
        print(f"exercises: --root {root} is not a folder; give the repository root.")
        return 2
    try:
        return {"build": _run_build, "check": _run_check, "list": _run_list}[args.command](root)
    except ExercisesError as error:
        print(f"exercises: {error}")
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m workshop exercises",
        description="Generate chapters/ exercise code from solutions/, check it is current, "
                    "or list the exercises.")
    parser.add_argument("command", choices=["build", "check", "list"],
                        help="build: write chapters/; check: report drift; list: show exercises")
    parser.add_argument("--root", help="repository root (default: the one this kit is in)")
    return parser


def _run_build(root: Path) -> int:
    for folder in _misnamed_chapter_folders(root):
        print(f"exercises: skipped {folder}: not named chNN_name (two digits, lower-case).")
    changed = build(root)
    for path in changed:
        verb = "wrote" if path.exists() else "deleted"
        print(f"exercises: {verb} {_shown(path, root)}")
    print(f"exercises: {len(changed) or 'no'} file{'' if len(changed) == 1 else 's'} changed "
          f"(solutions/ makes {_counts(root)}).")
    return 0


def _run_check(root: Path) -> int:
    problems = check(root)
    for problem in problems:
        print(f"exercises: {problem}")
    if problems:
        return 1
    print(f"exercises: chapters/ is up to date with solutions/ ({_counts(root)})")
    return 0


def _run_list(root: Path) -> int:
    exercises = list_exercises(root)
    if not exercises:
        print("exercises: no exercises marked in solutions/ yet.")
    for exercise in exercises:
        part = f" ({exercise.part}/{exercise.parts})" if exercise.parts else ""
        print(f"{exercise.id + part:<6} {exercise.path.as_posix()}:{exercise.line}  {exercise.hint}")
    return 0


def _counts(root: Path) -> str:
    outputs = _plan(root)
    exercises = len({e.id for o in outputs for e in o.exercises})
    return (f"{len(outputs)} file{'' if len(outputs) == 1 else 's'}, "
            f"{exercises} exercise{'' if exercises == 1 else 's'}")


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
