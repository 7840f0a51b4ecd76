"""workshop.prose: dollar pairs that Jupyter or GitHub would typeset as math are found, and only those."""
import json

from workshop import prose


def test_a_dollar_pair_in_a_paragraph_is_found_with_its_line():
    found = prose.typeset_dollars("# Prices\n\nIt costs $1 and\nthen $2 more.\n")
    assert found == [(3, "$1 and then $")]


def test_escaped_dollars_code_spans_and_fences_are_left_alone():
    markdown = ("Escaped: \\$1 and \\$2.\n\n"
                "In code: `echo $1 $2` and ``a $ b ` $ c``.\n\n"
                "```bash\necho $HOME $PATH\n```\n\n"
                "~~~\ncost $0.1 $0.2\n~~~\n")
    assert prose.typeset_dollars(markdown) == []


def test_a_pair_needs_both_dollars_in_one_paragraph():
    assert prose.typeset_dollars("Costs $1.\n\nAnd $2.\n") == []


def test_notebooks_markdown_cells_are_checked_and_code_cells_are_not(tmp_path):
    notebook = tmp_path / "ch.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": ["print('$1 and $2')\n"], "metadata": {}, "outputs": []},
        {"cell_type": "markdown", "source": ["Bills **$0.001 per request plus $0.0002** per station\n"], "metadata": {}},
    ]}))
    problems = prose.check_dollars([notebook], root=tmp_path)
    assert len(problems) == 1 and problems[0].startswith("ch.ipynb, cell 2, line 1: '$0.001 per request plus $'")


def test_the_workshops_prose_has_no_dollar_pair():
    assert prose.check_dollars(prose.prose_files()) == []
