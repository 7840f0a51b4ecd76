"""The chapter notebooks: each runs top to bottom against the solutions without an error, and a fresh
run keeps the shape of the outputs it is committed with (workshop/notebooks.py; `make notebooks` saves them).

Each notebook runs once: its fresh outputs are checked for errors and compared, in shape, with the file.
The shape comparison itself is tested first, on small notebooks built here, without a kernel.
"""
import copy

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from workshop import notebooks

NOTEBOOKS = notebooks.notebooks()
PNG = "iVBORw0KGgo="   # the first bytes of a PNG, base64: the shape only asks whether one is there


def stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


def display(**data):
    return new_output("display_data", data={"text/plain": "<Figure>", **data})


def figure():
    return display(**{"image/png": PNG})


def result(text):
    return new_output("execute_result", data={"text/plain": text}, execution_count=1)


def sample():
    """A small notebook like a chapter's: prose, a print, a bar and a table, a plot, a value."""
    return new_notebook(cells=[
        new_markdown_cell("# A chapter"),
        new_code_cell("session = lab.setup()", outputs=[stream("Redis: at redis://127.0.0.1:6379/0\n")]),
        new_code_cell("run()", outputs=[display(), stream("finished in 2.6 s\n"), display(**{"text/markdown": "|a|"})]),
        new_code_cell("plot()", outputs=[figure(), stream("429s: 6\n")]),
        new_code_cell("value", outputs=[result("{'done': 300}")]),
        new_code_cell("api.stop()", outputs=[]),
    ])


# --------------------------------------------------------------------------- the shape comparison

def test_the_same_notebook_has_the_same_shape():
    assert notebooks.shape_differences(sample(), sample()) == []


def test_other_numbers_are_the_same_shape():
    fresh = sample()
    fresh.cells[2].outputs[1]["text"] = "finished in 3.9 s\n"
    fresh.cells[3].outputs[0]["data"]["image/png"] = "AAAA"
    fresh.cells[4].outputs[0]["data"]["text/plain"] = "{'done': 299}"
    assert notebooks.shape_differences(sample(), fresh) == []


def test_streams_split_or_interleaved_differently_are_the_same_shape():
    fresh = sample()
    fresh.cells[2].outputs[1:2] = [stream("finished "), stream("a log line\n", name="stderr"), stream("in 2 s\n")]
    assert notebooks.shape_differences(sample(), fresh) == []


@pytest.mark.parametrize("change, says", [
    (lambda nb: nb.cells.append(new_code_cell("more()")), "7 in a fresh run"),
    (lambda nb: nb.cells.pop(0), "5 in a fresh run"),
    (lambda nb: nb.cells.__setitem__(0, new_code_cell("# A chapter")), "cell 0: a markdown cell committed"),
    (lambda nb: nb.cells[2].outputs.pop(0), "cell 2 (run()): outputs"),
    (lambda nb: nb.cells[2].outputs.append(new_output("error", ename="KeyError", evalue="x", traceback=[])),
     "'error']"),
    (lambda nb: nb.cells[3].outputs[0]["data"].pop("image/png"), "['display_data', 'stream'] in a fresh run"),
    (lambda nb: nb.cells[4].outputs.__setitem__(0, stream("{'done': 300}\n")), "['stream'] in a fresh run"),
    (lambda nb: nb.cells[5].outputs.append(stream("stopped\n")), "cell 5"),
    (lambda nb: nb.cells[1].outputs.clear(), "cell 1"),
], ids=["cell added", "cell removed", "cell type", "output missing", "error added", "plot gone",
        "result printed instead", "output added", "outputs cleared"])
def test_a_changed_shape_is_found_and_said(change, says):
    fresh = sample()
    change(fresh)
    differences = notebooks.shape_differences(sample(), fresh)
    assert len(differences) == 1 and says in differences[0], differences


def test_a_notebook_committed_without_outputs_differs_from_a_run():
    cleared = sample()
    for cell in cleared.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    assert len(notebooks.shape_differences(cleared, sample())) == 4


def test_errors_name_the_cell():
    nb = sample()
    nb.cells[4].outputs = [new_output("error", ename="KeyError", evalue="'done'", traceback=[])]
    assert notebooks.errors(nb) == ["cell 4: KeyError: 'done'"]
    assert notebooks.errors(sample()) == []


# --------------------------------------------------------------------------- the saved form

def widget_run(model_ids, value=55.0, total=60.0):
    """A notebook with one tqdm bar as nbclient leaves it: random model ids, the first frame as text."""
    box, left, bar, right, layout = model_ids
    html = {"model_name": "HTMLModel", "model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0"}
    state = {
        box: {**html, "model_name": "HBoxModel", "state": {"children": [f"IPY_MODEL_{left}", f"IPY_MODEL_{bar}",
                                                                          f"IPY_MODEL_{right}"],
                                                             "layout": f"IPY_MODEL_{layout}"}},
        left: {**html, "state": {"value": "fetch:\u2007\u200792%"}},
        bar: {**html, "model_name": "FloatProgressModel", "state": {"value": value, "max": total,
                                                                    "bar_style": "danger"}},
        right: {**html, "state": {"value": "\u200755/60\u2007[00:17&lt;00:01,\u2007failed=0]"}},
        layout: {"model_name": "LayoutModel", "model_module": "@jupyter-widgets/base", "state": {}},
        "unshown": {"model_name": "LayoutModel", "model_module": "@jupyter-widgets/base", "state": {}},
    }
    view = {"model_id": box, "version_major": 2, "version_minor": 0}
    cell = new_code_cell("follow()", execution_count=1, outputs=[
        new_output("display_data", data={notebooks.WIDGET_VIEW: view, "text/plain": "fetch:   0%|  | 0/60"}),
        stream("one "), stream("line\n"), stream("a log\n", name="stderr"), stream("two\n")])
    cell.id = "follow"                          # nbformat draws a random one
    cell.metadata["execution"] = {"iopub.status.idle": "2026-01-15T10:00:00Z"}
    nb = new_notebook(cells=[cell])
    nb.metadata = {"kernelspec": notebooks.KERNELSPEC, "language_info": {"name": "python", "version": "3.11.7"},
                   "widgets": {notebooks.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}}
    return nb


def test_the_saved_form_is_the_same_whatever_ids_a_run_drew():
    one = notebooks.normalise(widget_run(["a1", "b1", "c1", "d1", "e1"]), "ch09_x")
    two = notebooks.normalise(widget_run(["z9", "y9", "x9", "w9", "v9"]), "ch09_x")
    assert nbformat.writes(one) == nbformat.writes(two)
    state = one.metadata.widgets[notebooks.WIDGET_STATE]["state"]
    assert len(state) == 5                                   # the model no output shows is left out
    box = one.cells[0].outputs[0]["data"][notebooks.WIDGET_VIEW]["model_id"]
    assert state[box]["model_name"] == "HBoxModel"
    assert all(ref[len("IPY_MODEL_"):] in state for ref in state[box]["state"]["children"])


def test_the_saved_form_shows_the_bar_at_its_end_without_timing_or_kernel_version():
    nb = notebooks.normalise(widget_run(["a", "b", "c", "d", "e"]), "ch09_x")
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == \
        "fetch:  92%|█████████▏| 55/60 [00:17<00:01, failed=0]  (red: stopped at 55 of 60)"   # its colour, in words
    assert [(o["name"], o["text"]) for o in nb.cells[0].outputs[1:]] == [
        ("stdout", "one line\n"), ("stderr", "a log\n"), ("stdout", "two\n")]
    assert "execution" not in nb.cells[0].metadata
    assert nb.metadata.language_info == notebooks.LANGUAGE_INFO
    assert notebooks.problems(nb, "ch09_x") == []
    assert notebooks.problems(widget_run(["a", "b", "c", "d", "e"]), "ch09_x")    # as nbclient left it: not saved


def test_a_full_bar_and_an_empty_one():
    full = widget_run(["a", "b", "c", "d", "e"], value=60.0)
    full.metadata.widgets[notebooks.WIDGET_STATE]["state"]["c"]["state"]["bar_style"] = "success"
    full = notebooks.normalise(full, "ch09_x")
    assert "|██████████|" in full.cells[0].outputs[0]["data"]["text/plain"]
    assert full.cells[0].outputs[0]["data"]["text/plain"].endswith("(green: reached 60 of 60)")
    empty = notebooks.normalise(widget_run(["a", "b", "c", "d", "e"], value=0.0, total=0.0), "ch09_x")
    assert "|          |" in empty.cells[0].outputs[0]["data"]["text/plain"]


def test_normalising_keeps_the_shape():
    nb = widget_run(["a", "b", "c", "d", "e"])
    assert notebooks.shape_differences(nb, notebooks.normalise(copy.deepcopy(nb), "ch09_x")) == []


# --------------------------------------------------------------------------- the chapters' notebooks

@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def _test_notebook_is_committed_in_the_saved_form(path):
    assert notebooks.problems(nbformat.read(path, as_version=4), path.stem) == [], \
        "run `make notebooks` and commit the notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def _test_notebook_runs_and_keeps_its_shape(path, redis, monkeypatch):
    # The kernel inherits this environment: the session's Redis, and the solutions tree.
    monkeypatch.setenv("WORKSHOP_TARGET", "solutions")
    committed = nbformat.read(path, as_version=4)
    fresh = notebooks.execute(path)
    assert notebooks.errors(fresh) == []
    differences = notebooks.shape_differences(committed, fresh)
    assert differences == [], (f"{path.name} no longer matches its committed outputs in shape: "
                               + "; ".join(differences) + ". Run `make notebooks` and commit it.")


# No notebook yet means no test here, rather than a skipped one.
if NOTEBOOKS:
    test_notebook_is_committed_in_the_saved_form = _test_notebook_is_committed_in_the_saved_form
    test_notebook_runs_and_keeps_its_shape = _test_notebook_runs_and_keeps_its_shape
