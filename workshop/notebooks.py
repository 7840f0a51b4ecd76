"""The chapter notebooks: run them, save them with their outputs, compare their shape.

    python -m workshop.notebooks run [NOTEBOOK ...]    # make notebooks: execute on the solutions, save in place
    python -m workshop.notebooks check [NOTEBOOK ...]  # no kernel: each is saved executed, normalised, error-free

Notebooks are committed with the outputs of a solutions run, so they read well
unrun. `run` executes each one with nbclient (WORKSHOP_TARGET=solutions, one
Redis for all of them) and writes it back in a form that only changes where the
outputs change:

- no execution timing, no kernel's Python version in the metadata;
- in exactly the form JupyterLab saves it, so opening a notebook and Lab's autosave change nothing
  git sees: the kernelspec's display name as the installed kernel gives it ("Python 3 (ipykernel)"),
  whole numbers written as JavaScript writes them (60, not 60.0), nbformat's indent and key order. The
  one field Lab adds that is not committed is the kernel's Python version (it differs between
  laptops): `lab_pre_save`, the Jupyter server's pre-save hook this package installs
  (<prefix>/etc/jupyter/jupyter_server_config.json), leaves it out of every notebook saved;
- consecutive stream outputs of one name in one output (what a reader sees);
- progress bars (tqdm's ipywidgets) saved with their widget state, under model
  ids numbered in the order they appear (not fresh random ones every run), and
  with a text fallback that shows the bar's end state (the one tqdm leaves is
  its first frame, 0%) and says its colour in words ("red: stopped at 55 of 60"),
  for viewers without widgets, such as GitHub's, and Lab before the notebook is run.

`shape` is what a fresh run must keep of a committed notebook (tests/test_notebooks.py
compares them): the cells and their types, and per code cell the kinds of its
outputs, not their numbers.
"""
from __future__ import annotations

import argparse
import copy
import html
import os
import re
import sys
import time
import uuid
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CELL_TIMEOUT = 240          # s: the longest a single cell may run before the run fails
KERNEL = "python3"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": KERNEL}   # ipykernel's, as Lab saves it
LANGUAGE_INFO = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                 "pygments_lexer": "ipython3"}   # what the kernel reports, without its Python version
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MODEL_REF = "IPY_MODEL_"
IDS = uuid.UUID("9f1c6d1e-6c1a-4b43-9d1e-0c3a5e7d2b10")   # namespace of the saved widgets' model ids


def notebooks(root: Path = ROOT) -> list[Path]:
    """Every chapter's notebook, in chapter order."""
    return sorted(root.glob("chapters/ch[0-9][0-9]_*/*.ipynb"))


# --------------------------------------------------------------------------- shape

def output_kind(output: dict) -> str:
    """stream, display_data, execute_result or error; `+image/png` when the output carries a PNG."""
    kind = output.get("output_type", "?")
    if "image/png" in output.get("data", {}):
        kind += "+image/png"
    return kind


def shape(nb) -> list[tuple[str, tuple[str, ...]]]:
    """Per cell: its type and, for a code cell, the kinds of its outputs in order.

    Streams next to each other count as one: how a print and a log line split or
    interleave (stdout, stderr, the moment a worker thread writes) is not the shape."""
    cells = []
    for cell in nb["cells"]:
        kinds: list[str] = []
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            kind = output_kind(output)
            if not (kind == "stream" and kinds and kinds[-1] == "stream"):
                kinds.append(kind)
        cells.append((cell["cell_type"], tuple(kinds)))
    return cells


def shape_differences(committed, fresh) -> list[str]:
    """Where a fresh run's shape differs from the committed notebook's, one sentence each; [] when they match."""
    ours, theirs = shape(committed), shape(fresh)
    if len(ours) != len(theirs):
        return [f"{len(ours)} cells committed, {len(theirs)} in a fresh run"]
    differences = []
    for index, ((kind, outputs), (fresh_kind, fresh_outputs)) in enumerate(zip(ours, theirs)):
        if kind != fresh_kind:
            differences.append(f"cell {index}: a {kind} cell committed, a {fresh_kind} cell in a fresh run")
        elif outputs != fresh_outputs:
            differences.append(f"cell {index} ({first_line(committed['cells'][index])}): outputs "
                               f"{list(outputs)} committed, {list(fresh_outputs)} in a fresh run")
    return differences


def first_line(cell) -> str:
    line = cell["source"].strip().splitlines()[0] if cell["source"].strip() else ""
    return line if len(line) <= 50 else line[:50].rsplit(" ", 1)[0] + " ..."


def errors(nb) -> list[str]:
    """Every error output, as `cell N: Name: value`."""
    return [f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
            for index, cell in enumerate(nb["cells"]) for output in cell.get("outputs", [])
            if output.get("output_type") == "error"]


# --------------------------------------------------------------------------- normal form

def normalise(nb, name: str):
    """The notebook as it is committed (a copy): see the module's docstring. `name` seeds the widget ids."""
    nb = copy.deepcopy(nb)
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE)
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for cell in nb.cells:
        for key in ("execution", "collapsed", "scrolled"):
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = coalesced(cell.outputs)
    if widgets and widgets.get("state"):
        nb.metadata["widgets"] = {WIDGET_STATE: renumbered(nb, widgets, name)}
    return nbformat.from_dict(js_numbers(nb))


def js_numbers(value):
    """`value` with every whole float as an int: Lab saves through JavaScript, where 60.0 is written 60."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [js_numbers(item) for item in value]
    if isinstance(value, dict):
        return {key: js_numbers(item) for key, item in value.items()}
    return value


def lab_pre_save(model: dict, **_) -> None:
    """The Jupyter server's pre-save hook: a notebook is saved without the kernel's Python version.

    Lab writes the running kernel's `language_info.version` into a notebook it opens, then autosaves;
    the committed notebooks hold none (it differs from laptop to laptop), so without it the file on
    disk stays byte for byte as committed."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        model["content"].get("metadata", {}).get("language_info", {}).pop("version", None)


def coalesced(outputs: list) -> list:
    """Consecutive stream outputs of one name (stdout, stderr) as one output, as a reader sees them."""
    merged: list = []
    for output in outputs:
        last = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and last is not None and last.get("output_type") == "stream"
                and last.get("name") == output.get("name")):
            last["text"] = last["text"] + output["text"]
        else:
            merged.append(output)
    return merged


def _references(value) -> list[str]:
    """The model ids a widget's state points at, in order."""
    if isinstance(value, str):
        return [value[len(MODEL_REF):]] if value.startswith(MODEL_REF) else []
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _references(item)]
    return []


def _rewritten(value, ids: dict[str, str]):
    if isinstance(value, str) and value.startswith(MODEL_REF):
        return MODEL_REF + ids.get(value[len(MODEL_REF):], value[len(MODEL_REF):])
    if isinstance(value, list):
        return [_rewritten(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _rewritten(item, ids) for key, item in value.items()}
    return value


def renumbered(nb, widgets: dict, name: str) -> dict:
    """The widget state of the models the outputs show, under ids numbered in order of appearance.

    Text fallbacks of progress bars are set to their end state on the way. Models no output
    shows (none, normally) are left out: nothing would render them."""
    state = widgets["state"]
    order: list[str] = []

    def visit(model_id: str) -> None:
        if model_id in state and model_id not in order:
            order.append(model_id)
            for ref in _references(state[model_id].get("state", {})):
                visit(ref)

    views = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs
             if WIDGET_VIEW in output.get("data", {})]
    for output in views:
        visit(output["data"][WIDGET_VIEW].get("model_id", ""))
    ids = {old: uuid.uuid5(IDS, f"{name}/{index}").hex for index, old in enumerate(order)}
    for output in views:
        view = output["data"][WIDGET_VIEW]
        text = progress_text(state, view.get("model_id", ""))
        if text is not None:
            output["data"]["text/plain"] = text
        view["model_id"] = ids.get(view.get("model_id"), view.get("model_id"))
    return {**{key: value for key, value in widgets.items() if key != "state"},
            "state": {ids[old]: _rewritten(state[old], ids) for old in order}}


def progress_text(state: dict, model_id: str) -> str | None:
    """A tqdm notebook bar (an HBox: description, progress, figures) as tqdm's text line, at its last state."""
    box = state.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    children = [state.get(ref[len(MODEL_REF):], {}) for ref in box.get("state", {}).get("children", [])]
    if [child.get("model_name") for child in children] not in (["HTMLModel", "FloatProgressModel", "HTMLModel"],
                                                                ["HTMLModel", "IntProgressModel", "HTMLModel"]):
        return None
    left, bar, right = (child["state"] for child in children)
    top = bar.get("max") or 0
    fraction = min(max((bar.get("value") or 0) / top, 0.0), 1.0) if top else 0.0

    def text(value) -> str:
        return html.unescape(value or "").replace("\u2007", " ")

    cells = fraction * 10
    full = int(cells)
    partial = " ▏▎▍▌▋▊▉"[int((cells - full) * 8)] if full < 10 else ""
    drawn = ("█" * full + partial).ljust(10)
    line = f"{text(left.get('value'))}|{drawn}|{text(right.get('value'))}"
    # The colour is what a reader is told to look at ("the bar turns red"): without widgets, say it.
    said = {"danger": f"red: stopped at {bar.get('value') or 0:g} of {top:g}",
            "success": f"green: reached {top:g} of {top:g}"}.get(bar.get("bar_style") or "")
    return f"{line}  ({said})" if said else line


def problems(nb, name: str) -> list[str]:
    """Why a committed notebook is not as `run` saves it, one sentence each; [] when it is."""
    found = [f"error output in {error}" for error in errors(nb)]
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in code]
    if counts != list(range(1, len(code) + 1)):
        found.append(f"its code cells are not saved from one run top to bottom (execution counts {counts})")
    if nbformat.writes(normalise(nb, name)) != nbformat.writes(nb):
        found.append("its metadata or outputs are not in the saved form (timing, kernel version, widget ids, "
                     "split streams, or a kernelspec or numbers not as JupyterLab writes them)")
    return found


# --------------------------------------------------------------------------- running

def execute(path: Path, cell_timeout: float = CELL_TIMEOUT):
    """Run the notebook at `path` top to bottom in a fresh kernel; the executed notebook, normalised.

    The kernel inherits this process's environment (set WORKSHOP_TARGET and REDIS_URL first).
    A cell that raises stops the run: nbclient's CellExecutionError names it."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=cell_timeout, kernel_name=KERNEL, record_timing=False, store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return normalise(nb, path.stem)


def save(nb, path: Path) -> None:
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def _paths(given: list[str]) -> list[Path]:
    return [Path(p).resolve() for p in given] or notebooks()


def run(paths: list[Path]) -> int:
    """make notebooks: execute each notebook on the solutions (one Redis for all), save it in place."""
    from .celery_app import use_redis
    from .redis_provider import provide_redis

    os.environ["WORKSHOP_TARGET"] = "solutions"
    failed = 0
    with provide_redis() as provided:
        use_redis(provided.url)      # REDIS_URL, inherited by every kernel
        for path in paths:
            started = time.monotonic()
            try:
                nb = execute(path)
            except Exception as error:  # a failing cell: say which notebook, keep the committed file
                failed += 1
                print(f"FAILED {path.relative_to(ROOT)}: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
                continue
            bad = errors(nb)
            if bad:
                failed += 1
                print(f"FAILED {path.relative_to(ROOT)}: {'; '.join(bad)}", file=sys.stderr)
                continue
            save(nb, path)
            print(f"saved {path.relative_to(ROOT)} ({time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


def check(paths: list[Path]) -> int:
    """Without a kernel: each notebook is saved from a run, in the saved form, without errors."""
    bad = 0
    for path in paths:
        for problem in problems(nbformat.read(path, as_version=4), path.stem):
            bad += 1
            print(f"{path.relative_to(ROOT)}: {problem}", file=sys.stderr)
    if bad:
        print("Run `make notebooks` to execute the notebooks and save them with their outputs.", file=sys.stderr)
        return 1
    print(f"{len(paths)} notebooks saved with their outputs, in the saved form")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.notebooks", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("run", "check"),
                        help="run: execute and save in place (make notebooks); check: the saved form, no kernel")
    parser.add_argument("notebooks", nargs="*", help="notebook files (default: every chapter's)")
    args = parser.parse_args(argv)
    paths = _paths(args.notebooks)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    return run(paths) if args.command == "run" else check(paths)


if __name__ == "__main__":
    sys.exit(main())
