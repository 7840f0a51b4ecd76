"""Every exercise has a verdict of its own, the README says how to get it, and its hints do not hold the answer.

Read from the files, not run: each exercise in solutions/ has at least one test marked
`@pytest.mark.exercise("N.M")` in its chapter's test modules; each chapter README's exercise
section names exactly that command (`make check EX=N.M`), and no `-k` selection (which drifted
from the tests before); and no hint holds more than HINT_CODE characters of code (inline code
spans and fenced blocks together): a hint that can be pasted and pass teaches nothing.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from workshop import exercises, target

ROOT = target.ROOT
TESTS = ROOT / "tests"
HINT_CODE = 120   # characters of code a hint may hold: names, one command, a signature
ALL = exercises.list_exercises(ROOT)


def marked(path: Path) -> dict[str, list[str]]:
    """exercise id -> the tests of `path` marked @pytest.mark.exercise(id) (or the module's pytestmark)."""
    tree, found = ast.parse(path.read_text(encoding="utf-8")), {}

    def ids_of(node) -> list[str]:
        calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
        return [arg.value for call in calls
                if isinstance(call.func, ast.Attribute) and call.func.attr == "exercise"
                for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]

    module_wide = [i for node in tree.body if isinstance(node, ast.Assign)
                   and any(getattr(t, "id", "") == "pytestmark" for t in node.targets) for i in ids_of(node.value)]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            for i in module_wide + [i for deco in node.decorator_list for i in ids_of(deco)]:
                found.setdefault(i, []).append(node.name)
    return found


def chapter_tests(chapter: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(TESTS.glob(f"test_ch{chapter:02d}_*.py")):
        for i, tests in marked(path).items():
            found.setdefault(i, []).extend(tests)
    return found


def readme(chapter: int) -> str:
    folder = next((ROOT / "chapters").glob(f"ch{chapter:02d}_*"))
    return (folder / "README.md").read_text(encoding="utf-8")


def exercise_sections(text: str) -> dict[str, str]:
    """exercise id -> its section of the README: from its bold title (**5.3 — ...**) to the next one."""
    starts = [(m.group(1), m.start()) for m in re.finditer(r"^\*\*(\d+\.\d+) — ", text, flags=re.M)]
    return {i: text[at:(starts[n + 1][1] if n + 1 < len(starts) else len(text))] for n, (i, at) in enumerate(starts)}


@pytest.mark.parametrize("exercise", ALL, ids=[e.id for e in ALL])
def test_every_exercise_has_tests_of_its_own(exercise):
    chapter = int(exercise.id.split(".")[0])
    assert chapter_tests(chapter).get(exercise.id), (
        f"exercise {exercise.id} has no test marked @pytest.mark.exercise({exercise.id!r}) in "
        f"tests/test_ch{chapter:02d}_*.py: `make check EX={exercise.id}` would run nothing")


@pytest.mark.parametrize("exercise", ALL, ids=[e.id for e in ALL])
def test_each_readme_names_the_exercises_own_command_and_no_hand_made_selection(exercise):
    chapter = int(exercise.id.split(".")[0])
    section = exercise_sections(readme(chapter)).get(exercise.id)
    assert section is not None, f"chapter {chapter}'s README has no section **{exercise.id} — ...** for it"
    first = section.split("<details>")[0]
    assert f"make check EX={exercise.id}" in first, \
        f"the README's section for {exercise.id} should say how to get its verdict: `make check EX={exercise.id}`"
    assert not re.search(r"`-k |-k \"", first), f"the README's section for {exercise.id} still selects tests with -k"


def hints(text: str) -> list[tuple[str, str]]:
    """(summary, body) of every <details> block whose summary is a hint."""
    return [(m.group(1), m.group(2)) for m in
            re.finditer(r"<details><summary>(Hint[^<]*)</summary>(.*?)</details>", text, flags=re.S)]


def code_in(body: str) -> str:
    fenced = re.findall(r"```[^\n]*\n(.*?)```", body, flags=re.S)
    rest = re.sub(r"```.*?```", "", body, flags=re.S)
    return "".join(fenced) + "".join(re.findall(r"`([^`\n]+)`", rest))


@pytest.mark.parametrize("chapter", sorted({int(e.id.split(".")[0]) for e in ALL}))
def test_no_hint_holds_the_answer(chapter):
    too_long = []
    for exercise, section in exercise_sections(readme(chapter)).items():
        for summary, body in hints(section):
            code = code_in(body)
            if len(code) > HINT_CODE:
                too_long.append(f"{exercise} {summary}: {len(code)} characters of code")
    assert not too_long, (f"chapter {chapter}: hints hold more than {HINT_CODE} characters of code (names, one "
                          f"command, a signature are fine; statements in a row are the answer): {too_long}")


def test_the_checks_here_can_fail(tmp_path):
    """A module without the mark, a section with a -k selection, a hint with the answer: each is caught."""
    module = tmp_path / "test_ch09_x.py"
    module.write_text("import pytest\n@pytest.mark.exercises('9.1')\ndef test_a(): pass\n"
                      "@pytest.mark.exercise('9.2')\ndef test_b(): pass\n")
    assert marked(module) == {"9.2": ["test_b"]}
    text = ("**9.1 — x.** Tests: `-k x`.\n<details><summary>Hint 2</summary>\n\n```python\n"
            + "answer = 1\n" * 20 + "```\n</details>\n**9.2 — y.** Tests: `make check EX=9.2`.\n")
    sections = exercise_sections(text)
    assert set(sections) == {"9.1", "9.2"} and "make check EX=9.1" not in sections["9.1"]
    assert len(code_in(hints(sections["9.1"])[0][1])) > HINT_CODE
