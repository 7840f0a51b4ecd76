"""The day's minutes agree everywhere: INSTRUCTORS.md's two paths, each chapter's README, the README's agenda.

Read from the files: each path's start times add up; the full day gives each chapter the minutes
of its README's time budget (whose parts add up to it); each README states its share of the
3-hour path as INSTRUCTORS.md does; the README's agenda is the 3-hour path, row for row; and
the 3-hour path is 3 hours.
"""
from __future__ import annotations

import re

import pytest

from workshop import target

ROOT = target.ROOT
THREE_HOURS = 180


def minutes(clock: str) -> int:
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


def table_after(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first Markdown table after `heading`, header and rule left out."""
    rest = text[text.index(heading):]
    rows = []
    for line in rest.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def chapter_of(cell: str) -> str | None:
    match = re.search(r"chapters/(ch\d\d_\w+)/README\.md|\b(ch\d\d_\w+)\b", cell)
    return (match.group(1) or match.group(2)) if match else None


def path_rows(heading: str) -> list[tuple[int, str, int | None]]:
    """(start, part, minutes) of a path in INSTRUCTORS.md."""
    rows = table_after((ROOT / "INSTRUCTORS.md").read_text(encoding="utf-8"), heading)
    return [(minutes(r[0]), r[1], int(r[2]) if r[2] else None) for r in rows]


def chapter_readme(chapter: str) -> str:
    return (ROOT / "chapters" / chapter / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("heading", ["### The 3-hour path", "### The full day"])
def test_each_path_adds_up(heading):
    rows = path_rows(heading)
    for (start, part, length), (after, _, _) in zip(rows, rows[1:]):
        assert start + length == after, f"{heading}: {part!r} starts at {start} min and lasts {length}, but the next part starts at {after}"
    if heading == "### The 3-hour path":
        assert rows[-1][0] == THREE_HOURS, f"the 3-hour path ends at {rows[-1][0]} min, not {THREE_HOURS}"


def test_the_full_day_gives_each_chapter_its_readmes_budget():
    for _, part, length in path_rows("### The full day"):
        chapter = chapter_of(part)
        if chapter is None:
            continue
        text = chapter_readme(chapter)
        budget = int(re.search(r"^## Time budget \((\d+) minutes\)", text, flags=re.M).group(1))
        parts = [int(r[-1]) for r in table_after(text, "## Time budget") if r[-1].isdigit()]
        assert budget == length, f"{chapter}: its README budgets {budget} min, INSTRUCTORS.md's full day {length}"
        assert sum(parts) == budget, f"{chapter}: its README's parts add up to {sum(parts)} min, not {budget}"


def test_each_readme_states_its_share_of_the_3_hour_path():
    for _, part, length in path_rows("### The 3-hour path"):
        chapter = chapter_of(part)
        if chapter is None:
            continue
        said = re.search(r"3-hour path[^:]*\): (\d+) minutes", chapter_readme(chapter))
        assert said and int(said.group(1)) == length, \
            f"{chapter}: its README should say its share of the 3-hour path, {length} minutes, as INSTRUCTORS.md does"


def test_the_readmes_agenda_is_the_3_hour_path():
    agenda = table_after((ROOT / "README.md").read_text(encoding="utf-8"), "## Agenda")
    path = path_rows("### The 3-hour path")
    assert [minutes(row[0]) for row in agenda] == [start for start, _, _ in path[:-1]], \
        "the README's agenda starts its parts at other times than INSTRUCTORS.md's 3-hour path"
    assert [chapter_of(row[1]) for row in agenda] == [chapter_of(part) for _, part, _ in path[:-1]]
