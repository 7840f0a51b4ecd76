"""The exercise generator: chapters/ is made from solutions/, and check catches drift.

Every test builds its own little repository under tmp_path; only the last one
looks at the real tree, as the drift guard CI relies on.
"""
from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest

from workshop.exercises import (
    BUILD_COMMAND,
    Exercise,
    ExerciseMarkerError,
    ExercisesError,
    build,
    check,
    exercise_copy,
    list_exercises,
    main,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LABEL = "solutions/ch01_periodic/cursor.py"

CURSOR_SOLUTION = textwrap.dedent('''\
    """Take the next slice of stations."""
    CURSOR = "cursor"


    def next_slice(r, size):
        # >>> exercise 1.2: read the cursor, take the next `size` ids, move the cursor atomically
        cursor = int(r.get(CURSOR) or 0)
        ids = list(range(cursor, cursor + size))
        r.set(CURSOR, cursor + size)
        return ids
        # <<<


    class Loop:
        def kick(self):
            if True:
                # >>> exercise 1.3: start the loop once
                return "kicked"
                # <<<

        def stop(self):
            return "stopped"
    ''')


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def import_file(path: Path):
    spec = importlib.util.spec_from_file_location(f"copy_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marker_error(source: str, label: str = LABEL) -> str:
    with pytest.raises(ExerciseMarkerError) as caught:
        exercise_copy(textwrap.dedent(source), label)
    return str(caught.value)


# ---------------------------------------------------------------- one file

def test_region_becomes_a_comment_and_a_raise_with_the_hint():
    copy = exercise_copy(CURSOR_SOLUTION, LABEL)
    hint = "read the cursor, take the next `size` ids, move the cursor atomically"
    assert (f"def next_slice(r, size):\n"
            f"    # exercise 1.2: {hint}\n"
            f'    raise NotImplementedError("exercise 1.2: {hint}")\n'
            f"\n\nclass Loop:") in copy
    assert "cursor = int(" not in copy and ">>>" not in copy and "<<<" not in copy


def test_region_keeps_its_indentation():
    copy = exercise_copy(CURSOR_SOLUTION, LABEL)
    assert ("        if True:\n"
            "            # exercise 1.3: start the loop once\n"
            '            raise NotImplementedError("exercise 1.3: start the loop once")\n'
            "\n"
            "    def stop(self):\n") in copy


def test_copy_starts_with_the_header_and_keeps_code_outside_regions():
    copy = exercise_copy(CURSOR_SOLUTION, LABEL)
    lines = copy.split("\n")
    assert lines[0] == f"# Exercise copy of {LABEL}, made by `{BUILD_COMMAND}`."
    assert lines[1].startswith('# Fill in each region marked "exercise N.M"')
    solution_lines = CURSOR_SOLUTION.split("\n")
    assert lines[2:2 + 5] == solution_lines[:5]           # everything before the first region
    assert lines[-4:] == solution_lines[-4:]               # everything after the last one


def test_copy_compiles_and_calling_the_exercise_raises_with_its_id(tmp_path):
    copy = exercise_copy(CURSOR_SOLUTION, LABEL)
    compile(copy, LABEL, "exec")
    module = import_file(write(tmp_path, "cursor.py", copy))
    with pytest.raises(NotImplementedError, match=r"exercise 1\.2"):
        module.next_slice(None, 3)
    with pytest.raises(NotImplementedError, match=r"exercise 1\.3: start the loop once"):
        module.Loop().kick()
    assert module.Loop().stop() == "stopped"


@pytest.mark.parametrize("hint", [
    'say "hello"', "it's", "both ' and \"", r"a back\slash and \n", "ends with \\",
    "{braces} and %s", "unicode: café → ✓", '""" triple """', "''' triple '''",
])
def test_hints_with_quotes_and_backslashes_still_compile(tmp_path, hint):
    source = f"def f():\n    # >>> exercise 1.1: {hint}\n    return 1\n    # <<<\n"
    copy = exercise_copy(source, LABEL)
    compile(copy, LABEL, "exec")
    module = import_file(write(tmp_path, "hinted.py", copy))
    with pytest.raises(NotImplementedError) as raised:
        module.f()
    assert str(raised.value) == f"exercise 1.1: {hint}"


def test_file_without_markers_is_copied_with_a_header():
    source = "import os\n\nVALUE = 1\n"
    copy = exercise_copy(source, LABEL)
    first, second, rest = copy.split("\n", 2)
    assert first.startswith("# Exercise copy of solutions/ch01_periodic/cursor.py")
    assert second.startswith("#") and "exercise N.M" not in second
    assert rest == source


def test_markers_quoted_in_strings_are_left_alone():
    source = textwrap.dedent('''\
        """Mark a region like this:

        # >>> exercise 1.9: hint
        # <<<
        """
        TEXT = "# <<<"
        ''')
    assert exercise_copy(source, LABEL).split("\n", 2)[2] == source


def test_shebang_future_import_and_encoding_line_stay_valid():
    source = ("#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n\"\"\"Doc.\"\"\"\n"
              "from __future__ import annotations\n\n"
              "def f() -> Later:\n    # >>> exercise 1.1: do it\n    pass\n    # <<<\n")
    copy = exercise_copy(source, LABEL)
    assert copy.startswith("# Exercise copy of ")
    compile(copy, LABEL, "exec", dont_inherit=True)


def test_crlf_and_bom_become_plain_newlines():
    copy = exercise_copy("\ufeffX = 1\r\ndef f():\r\n    # >>> exercise 1.1: go\r\n    pass\r\n"
                         "    # <<<\r\n", LABEL)
    assert "\r" not in copy and "\ufeff" not in copy
    assert copy.endswith('raise NotImplementedError("exercise 1.1: go")\n')


def test_the_copy_is_deterministic():
    assert exercise_copy(CURSOR_SOLUTION, LABEL) == exercise_copy(CURSOR_SOLUTION, LABEL)


# ---------------------------------------------------------------- marker errors

@pytest.mark.parametrize("source, line, says", [
    ("def f():\n    # >>> exercise 1.1: do it\n    pass\n",
     2, 'exercise 1.1 is opened here but never closed; add a "# <<<" line at the same indentation'),
    ("def f():\n    pass\n    # <<<\n",
     3, 'this "# <<<" closes no exercise'),
    ("def f():\n    # >>> exercise 1.1: outer\n    # >>> exercise 1.2: inner\n    pass\n"
     "    # <<<\n    # <<<\n",
     3, "exercise 1.2 is opened inside exercise 1.1 (opened at line 2); regions cannot nest"),
    ("def f():\n    # >>> exercise 1.1: do it\n    pass\n  # <<<\n",
     4, 'this "# <<<" is indented 2 spaces but exercise 1.1 (line 2) is opened indented 4 spaces'),
    ("def f():\n    # >>> exercise 1.1: one\n    pass\n    # <<<\n"
     "def g():\n    # >>> exercise 1.1: two\n    pass\n    # <<<\n",
     6, "exercise 1.1 is already used at solutions/ch01_periodic/cursor.py:2"),
    ("def f():\n    # >>> exercise 1.x: do it\n    pass\n    # <<<\n",
     2, '"1.x" is not an exercise id; write it as chapter.number, like "1.1"'),
    ("def f():\n    # >>> exercise 1: do it\n    pass\n    # <<<\n",
     2, '"1" is not an exercise id'),
    ("def f():\n    # >>> exercise 1.2 do it\n    pass\n    # <<<\n",
     2, 'this exercise marker is not in the form "# >>> exercise N.M: one-line hint"'),
    ("def f():\n    # >>> exercise 1.2:   \n    pass\n    # <<<\n",
     2, "exercise 1.2 has no hint; write one line after the colon"),
    ("def f():\n    # >>> exercise 3.2: do it\n    pass\n    # <<<\n",
     2, "exercise 3.2 belongs to chapter 3 but this file is in chapter 1; number it 1.2"),
    ("def f():\n    x = 1  # >>> exercise 1.1: do it\n    pass\n    # <<<\n",
     2, "this exercise marker shares its line with code; put it on a line of its own"),
    ("x = (1,\n     # >>> exercise 1.1: inside an expression\n     2)\n     # <<<\n",
     None, "exercise"),
])
def test_each_marker_error_is_one_sentence_with_file_and_line(source, line, says):
    message = marker_error(source)
    if line is not None:
        assert message.startswith(f"{LABEL}:{line}: ")
    else:
        assert message.startswith(f"{LABEL}:")
    assert says in message
    assert message.endswith(".") and "\n" not in message


def test_region_inside_an_expression_is_refused_with_the_reason():
    source = "X = [\n    1,\n    # >>> exercise 1.1: fill the list\n    2,\n    # <<<\n]\n"
    message = marker_error(source)
    assert message.startswith(f"{LABEL}:3: the exercise copy would not compile")
    assert "around whole statements" in message


def test_a_solution_python_cannot_read_is_reported_not_a_traceback():
    message = marker_error("def f(:\n    pass\n")
    assert message.startswith(f"{LABEL}:1: the solution does not compile")


def test_the_chapter_check_needs_a_chapter_folder_in_the_label():
    copy = exercise_copy("def f():\n    # >>> exercise 7.1: go\n    pass\n    # <<<\n", "loose.py")
    assert "exercise 7.1" in copy


# ---------------------------------------------------------------- the tree

def make_repo(root: Path) -> Path:
    write(root, LABEL, CURSOR_SOLUTION)
    write(root, "solutions/ch01_periodic/__init__.py", "")
    write(root, "solutions/ch01_periodic/helpers/fetch.py", "def fetch():\n    return []\n")
    write(root, "solutions/ch01_periodic/data/stations.csv", "id,name\r\n1,Oslo\r\n")
    write(root, "solutions/ch01_periodic/README.md", "engineers' notes\n")
    write(root, "solutions/ch01_periodic/__pycache__/cursor.cpython-311.pyc", "junk")
    write(root, "solutions/ch02_segmented/segments.py",
          "def discover():\n    # >>> exercise 2.1: list the stations\n    return []\n    # <<<\n")
    write(root, "solutions/notes.txt", "not a chapter\n")
    write(root, "chapters/ch01_periodic/README.md", "# Chapter 1 (hand-written)\n")
    write(root, "chapters/ch01_periodic/ch01_periodic.ipynb", '{"cells": []}\n')
    write(root, "chapters/ch01_periodic/scratch.py", "# an attendee's own file\n")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_build_writes_exercise_copies_headers_and_verbatim_data(tmp_path):
    root = make_repo(tmp_path)
    written = build(root)
    chapter = root / "chapters/ch01_periodic"
    assert sorted(p.relative_to(root).as_posix() for p in written) == [
        "chapters/ch01_periodic/__init__.py",
        "chapters/ch01_periodic/cursor.py",
        "chapters/ch01_periodic/data/stations.csv",
        "chapters/ch01_periodic/helpers/fetch.py",
        "chapters/ch02_segmented/segments.py",
    ]
    assert (chapter / "cursor.py").read_text() == exercise_copy(CURSOR_SOLUTION, LABEL)
    assert (chapter / "helpers/fetch.py").read_text().startswith(
        "# Exercise copy of solutions/ch01_periodic/helpers/fetch.py")
    assert (chapter / "data/stations.csv").read_bytes() == b"id,name\r\n1,Oslo\r\n"
    assert not (chapter / "__pycache__").exists()
    assert not (root / "chapters/notes.txt").exists()


def test_build_never_touches_hand_written_chapter_files(tmp_path):
    root = make_repo(tmp_path)
    before = {name: data for name, data in snapshot(root / "chapters").items()}
    build(root)
    after = snapshot(root / "chapters")
    for name, data in before.items():
        assert after[name] == data, name
    assert after["ch01_periodic/README.md"] == b"# Chapter 1 (hand-written)\n"


def test_build_is_idempotent(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    first = snapshot(root / "chapters")
    assert build(root) == []
    assert snapshot(root / "chapters") == first


def test_check_passes_after_build_and_counts(tmp_path, capsys):
    root = make_repo(tmp_path)
    assert check(root) != []
    build(root)
    assert check(root) == []
    assert main(["check", "--root", str(root)]) == 0
    assert capsys.readouterr().out.strip() == (
        "exercises: chapters/ is up to date with solutions/ (5 files, 3 exercises)")


def test_check_reports_a_missing_copy(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    (root / "chapters/ch02_segmented/segments.py").unlink()
    assert check(root) == [
        f"chapters/ch02_segmented/segments.py is missing; run `{BUILD_COMMAND}`."]


def test_check_fails_after_a_solution_is_edited(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    write(root, LABEL, CURSOR_SOLUTION.replace("stopped", "halted"))
    assert check(root) == [
        f"chapters/ch01_periodic/cursor.py is out of date with {LABEL}; run `{BUILD_COMMAND}`."]
    assert [p.name for p in build(root)] == ["cursor.py"]
    assert check(root) == []


def test_check_fails_after_data_is_edited(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    write(root, "chapters/ch01_periodic/data/stations.csv", "edited\n")
    assert check(root) == [
        "chapters/ch01_periodic/data/stations.csv is out of date with "
        f"solutions/ch01_periodic/data/stations.csv; run `{BUILD_COMMAND}`."]


def test_stale_copy_is_reported_by_check_and_deleted_by_build(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    (root / "solutions/ch01_periodic/helpers/fetch.py").unlink()
    (root / "solutions/ch02_segmented/segments.py").unlink()
    assert check(root) == [
        "chapters/ch01_periodic/helpers/fetch.py was generated from a solution that no longer "
        f"exists; run `{BUILD_COMMAND}` to delete it.",
        "chapters/ch02_segmented/segments.py was generated from a solution that no longer "
        f"exists; run `{BUILD_COMMAND}` to delete it.",
    ]
    deleted = build(root)
    assert sorted(p.name for p in deleted) == ["fetch.py", "segments.py"]
    assert not (root / "chapters/ch01_periodic/helpers").exists()    # emptied folder removed
    assert not (root / "chapters/ch02_segmented").exists()
    assert (root / "chapters/ch01_periodic/scratch.py").exists()      # hand-written: kept
    assert check(root) == []


def test_build_refuses_to_overwrite_a_hand_written_file_of_the_same_name(tmp_path):
    root = make_repo(tmp_path)
    write(root, "chapters/ch01_periodic/cursor.py", "# my own cursor\n")
    with pytest.raises(ExercisesError, match="was not made by build"):
        build(root)
    assert (root / "chapters/ch01_periodic/cursor.py").read_text() == "# my own cursor\n"
    assert any("was not made by build" in problem for problem in check(root))


def test_attendee_work_in_a_copy_is_overwritten_only_by_build(tmp_path):
    root = make_repo(tmp_path)
    build(root)
    copy = root / "chapters/ch01_periodic/cursor.py"
    copy.write_text(copy.read_text().replace('raise NotImplementedError("exercise 1.3', "return 1  # ("))
    assert len(check(root)) == 1
    build(root)
    assert "exercise 1.3: start the loop once\")" in copy.read_text()


def test_duplicate_ids_across_files_name_both_places(tmp_path):
    write(tmp_path, "solutions/ch01_periodic/a.py",
          "def f():\n    # >>> exercise 1.1: one\n    pass\n    # <<<\n")
    write(tmp_path, "solutions/ch01_periodic/b.py",
          "\ndef g():\n    # >>> exercise 1.1: two\n    pass\n    # <<<\n")
    with pytest.raises(ExerciseMarkerError) as caught:
        build(tmp_path)
    assert str(caught.value) == (
        "solutions/ch01_periodic/b.py:3: exercise 1.1 is already used at "
        "solutions/ch01_periodic/a.py:2; give this one a number of its own.")
    assert not (tmp_path / "chapters").exists()                       # nothing half-written


PART_ONE = "def f():\n    # >>> exercise 1.1, part 1 of 2: define it\n    return 1\n    # <<<\n"
PART_TWO = "\ndef g():\n    # >>> exercise 1.1, part 2 of 2: send it\n    return 2\n    # <<<\n"


def test_an_exercise_in_parts_has_a_stub_per_part_that_names_its_part(tmp_path, capsys):
    write(tmp_path, "solutions/ch01_periodic/a.py", PART_ONE)
    write(tmp_path, "solutions/ch01_periodic/b.py", PART_TWO)
    build(tmp_path)
    copy = (tmp_path / "chapters/ch01_periodic/b.py").read_text()
    assert '    raise NotImplementedError("exercise 1.1, part 2 of 2: send it")\n' in copy
    assert [(e.id, e.part, e.parts, e.path.name) for e in list_exercises(tmp_path)] == \
        [("1.1", 1, 2, "a.py"), ("1.1", 2, 2, "b.py")]
    assert main(["list", "--root", str(tmp_path)]) == 0
    assert "1.1 (2/2)" in capsys.readouterr().out
    assert main(["build", "--root", str(tmp_path)]) == 0
    assert "1 exercise)" in capsys.readouterr().out, "one exercise, in two parts"


@pytest.mark.parametrize("second, says", [
    (PART_TWO.replace("part 2 of 2", "part 1 of 2"),
     "solutions/ch01_periodic/b.py:3: exercise 1.1, part 1 of 2 is already used at solutions/ch01_periodic/a.py:2"),
    (PART_TWO.replace("part 2 of 2", "part 2 of 3"),
     "solutions/ch01_periodic/b.py:3: exercise 1.1, part 2 of 3 does not match exercise 1.1, part 1 of 2 at "
     "solutions/ch01_periodic/a.py:2"),
    (PART_TWO.replace(", part 2 of 2", ""),
     "solutions/ch01_periodic/b.py:3: exercise 1.1 does not match exercise 1.1, part 1 of 2"),
    ("X = 1\n", "solutions/ch01_periodic/a.py:2: exercise 1.1 has 2 parts but part 2 is marked nowhere"),
])
def test_the_parts_of_an_exercise_are_each_marked_once_and_counted_alike(tmp_path, second, says):
    write(tmp_path, "solutions/ch01_periodic/a.py", PART_ONE)
    write(tmp_path, "solutions/ch01_periodic/b.py", second)
    with pytest.raises(ExerciseMarkerError) as caught:
        build(tmp_path)
    assert str(caught.value).startswith(says) and str(caught.value).endswith(".")
    assert not (tmp_path / "chapters").exists()


@pytest.mark.parametrize("marker", ["exercise 1.1, part 1 of 1: alone", "exercise 1.1, part 3 of 2: too far",
                                    "exercise 1.1, part 0 of 2: from zero"])
def test_a_part_is_counted_from_one_up_to_more_than_one(marker):
    message = marker_error(f"def f():\n    # >>> {marker}\n    pass\n    # <<<\n")
    assert message.startswith(f"{LABEL}:2: exercise 1.1 says part ") and "count from 1" in message


def test_list_exercises_in_order_with_file_and_line(tmp_path):
    root = make_repo(tmp_path)
    exercises = list_exercises(root)
    assert exercises == [
        Exercise("1.2", "read the cursor, take the next `size` ids, move the cursor atomically",
                 Path(LABEL), 6),
        Exercise("1.3", "start the loop once", Path(LABEL), 17),
        Exercise("2.1", "list the stations", Path("solutions/ch02_segmented/segments.py"), 2),
    ]
    assert [e.id for e in exercises if e.chapter == 1] == ["1.2", "1.3"]


def test_misnamed_chapter_folder_is_reported(tmp_path):
    write(tmp_path, "solutions/ch1_periodic/cursor.py", "X = 1\n")
    assert check(tmp_path) == [
        "solutions/ch1_periodic looks like a chapter but is not named chNN_name (two digits, "
        "lower-case); rename it so its exercises are generated."]


# ---------------------------------------------------------------- command line

def test_main_on_an_empty_repository_succeeds(tmp_path, capsys):
    assert main(["check", "--root", str(tmp_path)]) == 0
    assert "(0 files, 0 exercises)" in capsys.readouterr().out


def test_main_build_check_and_list(tmp_path, capsys):
    root = make_repo(tmp_path)
    assert main(["check", "--root", str(root)]) == 1
    assert "is missing; run" in capsys.readouterr().out
    assert main(["build", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "exercises: wrote chapters/ch01_periodic/cursor.py" in out
    assert main(["build", "--root", str(root)]) == 0
    assert "no files changed" in capsys.readouterr().out
    assert main(["list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"1.3    {LABEL}:17  start the loop once" in out


def test_main_prints_a_marker_error_without_traceback(tmp_path, capsys):
    write(tmp_path, "solutions/ch03_signals/loop.py", "\n" * 41 +
          "def loop():\n    # >>> exercise 3.2: loop\n    pass\n")
    assert main(["check", "--root", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert out == ('exercises: solutions/ch03_signals/loop.py:43: exercise 3.2 is opened here '
                   'but never closed; add a "# <<<" line at the same indentation after its '
                   "last line.\n")
    assert "Traceback" not in out + err


# ---------------------------------------------------------------- the drift guard

def test_chapters_in_this_repository_match_their_solutions():
    problems = check(REPO_ROOT)
    assert problems == [], "\n".join(problems)
