"""workshop.docs (`make docs`): the prose's measured figures are filled from values.json, an unknown name stops
the build naming file and span, and check mode finds a figure that is no longer the measured one."""
import json

import nbformat
import pytest

from workshop import docs

VALUES = {"loop.looped.done": "150", "loop.stations": "150", "cost.aware.per_done": "$0.22",
          "measured.loop": "on 2026-12-03 by `make figures` (Some CPU, 2 cores, Python 3.11.7)",
          "loop.table": "| | a |\n| --- | ---: |\n| done | 150 |"}


def kit(tmp_path, readme: str, values: dict = VALUES):
    (tmp_path / "slides" / "figures").mkdir(parents=True)
    (tmp_path / "slides" / "figures" / "values.json").write_text(json.dumps(values))
    (tmp_path / "README.md").write_text(readme)
    return tmp_path


def span(name: str, text: str = "") -> str:
    return f"<!-- fig: {name} -->{text}<!-- /fig -->"


def test_build_fills_every_span_with_its_measured_value(tmp_path):
    root = kit(tmp_path, f"The loop did {span('loop.looped.done', '300')} of {span('loop.stations')} stations "
                         f"at {span('cost.aware.per_done')} per 1,000, measured {span('measured.loop', 'long ago')}.\n\n"
                         f"{span('loop.table')}\n")
    assert docs.build(root) == {"README.md": 5}
    assert (root / "README.md").read_text() == (
        f"The loop did {span('loop.looped.done', '150')} of {span('loop.stations', '150')} stations "
        f"at {span('cost.aware.per_done', chr(92) + '$0.22')} per 1,000, measured "
        f"{span('measured.loop', VALUES['measured.loop'])}.\n\n"
        f"{span('loop.table', chr(10) * 2 + VALUES['loop.table'] + chr(10) * 2)}\n")
    assert docs.check(root) == []


def test_a_notebooks_markdown_is_filled_and_its_code_left_alone(tmp_path):
    root = kit(tmp_path, "No figures here.\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"# {span('loop.stations', '1')}"),
                                         nbformat.v4.new_markdown_cell(f"A day of {span('loop.stations', '1')}.")])
    path = root / "chapters" / "ch01_x" / "ch01_x.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(nbformat.writes(nb) + "\n")
    assert docs.build(root) == {"chapters/ch01_x/ch01_x.ipynb": 1}
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].source == f"# {span('loop.stations', '1')}"
    assert cells[1].source == f"A day of {span('loop.stations', '150')}."


def test_an_unknown_figure_stops_the_build_naming_the_file_and_the_span(tmp_path):
    root = kit(tmp_path, f"Done: {span('loop.looped.dnoe', '150')}.\n")
    with pytest.raises(SystemExit) as stopped:
        docs.build(root)
    assert "README.md" in str(stopped.value) and "<!-- fig: loop.looped.dnoe -->" in str(stopped.value)
    assert (root / "README.md").read_text() == f"Done: {span('loop.looped.dnoe', '150')}.\n"


@pytest.mark.parametrize("readme", [f"Run `make {span('loop.stations', '150')}`.\n",
                                    f"```\n{span('loop.stations', '150')}\n```\n",
                                    "Done: <!-- fig: loop.stations -->150, never closed.\n"])
def test_a_span_in_code_or_left_open_is_refused(tmp_path, readme):
    with pytest.raises(SystemExit, match="README.md"):
        docs.build(kit(tmp_path, readme))


def test_check_finds_a_figure_typed_over_and_one_measured_again(tmp_path):
    root = kit(tmp_path, f"Done: {span('loop.looped.done', '150')}.\n")
    assert docs.check(root) == []
    (root / "README.md").write_text(f"Done: {span('loop.looped.done', '151')}.\n")   # typed by hand
    assert docs.check(root) == ["README.md"]
    docs.build(root)
    (root / "slides" / "figures" / "values.json").write_text(json.dumps({**VALUES, "loop.looped.done": "149"}))
    assert docs.check(root) == ["README.md"]                                             # measured again
    assert docs.main(["check", "--root", str(root)]) == 1
    assert docs.main(["build", "--root", str(root)]) == 0
    assert docs.main(["check", "--root", str(root)]) == 0


def test_the_workshops_prose_quotes_the_committed_figures():
    assert docs.check() == []
