"""Every chapter notebook runs top to bottom against the solutions; one that errors fails."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(ROOT.glob("chapters/ch[0-9][0-9]_*/*.ipynb"))


# No notebook yet means no test here, rather than a skipped one.
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.parent.name for p in NOTEBOOKS])
def _test_notebook_runs(path, redis, monkeypatch):
    # The kernel inherits this environment: the session's Redis, and the solutions tree.
    monkeypatch.setenv("WORKSHOP_TARGET", "solutions")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", [])
              if output.get("output_type") == "error"]
    assert not errors


if NOTEBOOKS:
    test_notebook_runs = _test_notebook_runs
