"""--target / WORKSHOP_TARGET decides which tree `import chNN_*` reads."""
import importlib
import subprocess
import sys

import pytest

from workshop import target
from workshop.settings import SettingsError


@pytest.fixture
def two_trees(tmp_path, monkeypatch):
    for tree, answer in (("solutions", "reference"), ("chapters", "exercise")):
        package = tmp_path / tree / "ch99_demo"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"WHO = {answer!r}\n")
    monkeypatch.setattr(target, "ROOT", tmp_path)
    saved = list(sys.path)
    yield tmp_path
    sys.path[:] = saved
    sys.modules.pop("ch99_demo", None)
    target.activate(None)


def test_activate_switches_the_imported_tree(two_trees):
    target.activate("solutions")
    assert importlib.import_module("ch99_demo").WHO == "reference"
    target.activate("chapters")
    assert importlib.import_module("ch99_demo").WHO == "exercise"
    assert str(two_trees / "solutions") not in sys.path


def test_chapters_lists_the_tree_in_order(two_trees):
    (two_trees / "solutions" / "ch01_first").mkdir()
    assert target.chapters("solutions") == ["ch01_first", "ch99_demo"]


def test_an_unknown_target_says_which_exist():
    with pytest.raises(SettingsError, match="use one of solutions, chapters"):
        target.tree("mine")


def test_pytest_rejects_an_unknown_target_in_one_line():
    done = subprocess.run([sys.executable, "-m", "pytest", "--target", "mine", "--collect-only", "-q"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 4
    assert "invalid choice: 'mine'" in done.stderr
