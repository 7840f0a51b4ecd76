"""Opening a notebook in JupyterLab changes nothing git sees: the committed form is the one Lab saves.

What Lab does to a notebook it opens, found by opening each chapter's notebook in Lab (Debian's Chromium,
headless) and letting it save: it writes the kernel's spec and language info into the metadata
(display name "Python 3 (ipykernel)", the kernel's Python version) and sends the notebook back as
JavaScript writes JSON (60, not 60.0); the server writes it with nbformat. Here the same round trip runs
on the Jupyter server's own contents manager, configured as this package installs it.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_server.services.contents.filemanager import FileContentsManager
from traitlets.config import Config

from workshop import notebooks

ROOT = Path(__file__).resolve().parent.parent
CONFIG = json.loads((ROOT / "workshop" / "jupyter_server_config.json").read_text())


def as_lab_sends_it(content: dict) -> dict:
    """The notebook model after Lab connected a kernel: its spec and language info, numbers as JavaScript's."""
    spec = KernelSpecManager().get_kernel_spec(notebooks.KERNEL)
    lab = json.loads(json.dumps(notebooks.js_numbers(content)))
    lab["metadata"]["kernelspec"] = {"display_name": spec.display_name, "language": spec.language,
                                     "name": notebooks.KERNEL}
    lab["metadata"]["language_info"] = {**notebooks.LANGUAGE_INFO, "version": sys.version.split()[0]}
    return lab


def lab_round_trip(path: Path, folder: Path, config: dict) -> bytes:
    """Open `path` as Lab does (GET), save it back as Lab's autosave does (PUT): the bytes on disk after."""
    shutil.copy(path, folder / path.name)
    manager = FileContentsManager(root_dir=str(folder), config=Config(config))
    model = manager.get(path.name, content=True, type="notebook")
    manager.save({"type": "notebook", "format": "json", "content": as_lab_sends_it(model["content"])}, path.name)
    return (folder / path.name).read_bytes()


@pytest.mark.parametrize("path", notebooks.notebooks(), ids=[p.parent.name for p in notebooks.notebooks()])
def test_opening_and_saving_in_lab_leaves_the_committed_bytes(path, tmp_path):
    assert lab_round_trip(path, tmp_path, CONFIG) == path.read_bytes(), \
        "Lab would rewrite this notebook on opening: save it with workshop.notebooks (make notebooks)"


def test_without_the_servers_hook_lab_would_write_the_kernels_python_version(tmp_path):
    path = notebooks.notebooks()[0]
    saved = json.loads(lab_round_trip(path, tmp_path, {}))
    assert saved["metadata"]["language_info"]["version"] == sys.version.split()[0]


def test_the_committed_kernelspec_is_the_installed_kernels():
    spec = KernelSpecManager().get_kernel_spec(notebooks.KERNEL)
    assert notebooks.KERNELSPEC == {"display_name": spec.display_name, "language": spec.language,
                                    "name": notebooks.KERNEL}


def test_the_hook_is_what_the_package_installs_for_jupyter():
    assert CONFIG == {"ContentsManager": {"pre_save_hook": "workshop.notebooks.lab_pre_save"}}
    assert '"etc/jupyter" = ["workshop/jupyter_server_config.json"]' in (ROOT / "pyproject.toml").read_text()
    assert "jupyter_server_config.json" in (ROOT / "Makefile").read_text()   # editable installs skip data-files
