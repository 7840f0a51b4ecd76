"""Falling behind costs a chapter's exercises, not the day: catch-up, and the tests' fail-fast path.

Both on a copy of the workshop (solutions/, the exercise copies build makes,
the kit and the tests), never on this checkout's chapters/, which may hold an
attendee's work.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workshop import catch_up, exercises

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workshop_copy(tmp_path) -> Path:
    """solutions/, workshop/, tests/ and pyproject.toml copied; chapters/ built fresh: every exercise a stub."""
    root = tmp_path / "workshop-copy"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".backup")
    for folder in ("solutions", "workshop", "tests"):
        shutil.copytree(ROOT / folder, root / folder, ignore=junk)
    shutil.copy2(ROOT / "pyproject.toml", root / "pyproject.toml")
    exercises.build(root)
    return root


def ids(stubs) -> list[str]:
    return [stub.id for stub in stubs]


def test_catch_up_copies_the_earlier_solutions_keeps_the_attendees_files_and_leaves_the_chapter_alone(
        workshop_copy):
    root = workshop_copy
    every = exercises.list_exercises(root)
    earlier = [e.id for e in every if e.chapter < 3]
    assert ids(catch_up.unfinished(root, before=3)) == earlier and earlier, "the stubs build wrote"
    sentence = catch_up.refusal(catch_up.unfinished(root, before=3), 3)
    assert f"exercise {earlier[0]} in chapters/" in sentence and "make catch-up CHAPTER=3" in sentence

    mine = root / "chapters/ch02_segmented/fetch.py"
    mine.write_text(mine.read_text() + "\n# my half-done attempt\n")
    attempt = mine.read_bytes()
    chapter_3 = {p: p.read_bytes() for p in (root / "chapters/ch03_signals").rglob("*.py")}

    written, backup = catch_up.catch_up(root, 3, stamp="t1")

    assert catch_up.unfinished(root, before=3) == [], "chapters 1 and 2 hold their solutions now"
    assert ids(catch_up.unfinished(root, before=4)) == [e.id for e in every if e.chapter == 3], "not chapter 3's"
    assert {p: p.read_bytes() for p in (root / "chapters/ch03_signals").rglob("*.py")} == chapter_3
    assert backup == root / "chapters/.backup/t1"
    assert (backup / "ch02_segmented/fetch.py").read_bytes() == attempt, "the attendee's attempt is kept, as it was"
    solution = (root / "solutions/ch02_segmented/fetch.py").read_text()
    assert mine.read_text().endswith(solution) and mine.read_text().startswith(exercises.HEADER_PREFIX)
    assert Path("chapters/ch02_segmented/fetch.py") in written
    assert all(p.parts[1][:4] in ("ch01", "ch02") for p in written)
    assert catch_up.catch_up(root, 3, stamp="t2") == ([], None), "a second catch-up has nothing to do"


def test_an_exercise_in_parts_is_named_once_with_every_file_still_a_stub(tmp_path):
    for name, part in (("a.py", 1), ("b.py", 2)):
        path = tmp_path / "solutions/ch01_periodic" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"def f{part}():\n    # >>> exercise 1.1, part {part} of 2: do part {part}\n    return 1\n"
                        "    # <<<\n")
    exercises.build(tmp_path)
    stubs = catch_up.unfinished(tmp_path)
    assert ids(stubs) == ["1.1", "1.1"], "a stub per part"
    assert catch_up.not_done(stubs).startswith(
        "This test checks exercise 1.1 in chapters/ch01_periodic/a.py and chapters/ch01_periodic/b.py, which is "
        "still a stub: fill it in")
    assert "(and 1 more" not in catch_up.refusal(stubs, 2), "one exercise, not two"


def test_the_command_says_what_it_did_and_refuses_a_chapter_that_has_nothing_before_it(workshop_copy, capsys):
    root = str(workshop_copy)
    assert catch_up.main(["2", "--root", root]) == 0
    out = capsys.readouterr().out
    assert "copied the solutions of chapters 1-1" in out and "exercises (1.1, 1.2, 1.3)" in out
    assert catch_up.main(["2", "--root", root]) == 0
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        catch_up.main(["1", "--root", root])
    assert "chapter 1 builds on nothing" in capsys.readouterr().err


def run_chapter_tests(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WORKSHOP_TARGET"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--target", "chapters",
                           *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_a_chapters_tests_stop_at_once_on_an_earlier_stub_with_one_sentence_and_run_after_catch_up(
        workshop_copy):
    root = workshop_copy
    quick = ("tests/test_ch04_rate_limits.py", "-k", "backoff_is_full_jitter or cluster_slot")
    before = run_chapter_tests(root, *quick)
    assert before.returncode != 0, before.stdout
    assert "Chapter 4 builds on the chapters before it, and exercise 1.1 in chapters/ch01_periodic/" in before.stdout
    assert "make catch-up CHAPTER=4" in before.stdout
    assert re.search(r"\b1 skipped, \d+ deselected, 1 error\b", before.stdout), before.stdout[-2000:]
    assert "NotImplementedError" not in before.stdout and "Traceback" not in before.stdout, "no traceback"

    assert catch_up.main(["4", "--root", str(root)]) == 0
    after = run_chapter_tests(root, *quick)
    assert after.returncode == 0 and re.search(r"\b2 passed, \d+ deselected\b", after.stdout), after.stdout[-2000:]


def test_a_notebook_on_the_exercises_stops_in_its_setup_cell_when_an_earlier_chapter_is_unfinished(
        workshop_copy):
    root = workshop_copy
    with pytest.raises(catch_up.EarlierChapterUnfinished, match=r"exercise 1\.1 .*make catch-up CHAPTER=2"):
        catch_up.require_earlier(2, root)
    catch_up.require_earlier(1, root)   # chapter 1 builds on nothing
    catch_up.catch_up(root, 2)
    catch_up.require_earlier(2, root)
    with pytest.raises(catch_up.EarlierChapterUnfinished, match=r"exercise 2\.1 "):
        catch_up.require_earlier(3, root)
    # Every notebook names its chapter, so its setup cell makes that check on your code.
    for notebook in sorted((ROOT / "chapters").glob("ch0*/ch0*.ipynb")):
        assert f"lab.setup(chapter={int(notebook.parent.name[2:4])}" in notebook.read_text(), notebook.name


def test_the_benchmarks_check_first_that_the_chapters_they_measure_are_done(workshop_copy, capsys):
    root = workshop_copy
    assert catch_up.check_done(root, 1) == 1
    assert "measures your chapters 1-1, and exercise 1.1 in chapters/ch01_periodic/" in capsys.readouterr().out
    catch_up.catch_up(root, 4)
    assert catch_up.check_done(root, 3) == 0 and capsys.readouterr().out == ""
    assert catch_up.main(["--check", "4", "--root", str(root)]) == 1
    assert "exercise 4.1 in chapters/ch04_rate_limits/" in capsys.readouterr().out
