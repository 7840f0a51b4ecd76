"""The workshop's pytest options, loaded before anything is collected (pyproject's addopts: -p workshop.pytest_plugin).

Options a conftest.py in tests/ adds are known only once pytest has found that file,
which it does from the paths given: `pytest --exercise 5.3` with no path would stop at
"unrecognized arguments". A plugin named in addopts is loaded first, whatever the paths.
The hooks that use the options are in tests/conftest.py.
"""
from __future__ import annotations

from . import target


def pytest_addoption(parser):
    parser.addoption("--target", choices=target.TREES, default=None,
                     help="which tree the chapter tests import (default: WORKSHOP_TARGET or solutions)")
    parser.addoption("--exercise", metavar="N.M", default=None,
                     help="run only exercise N.M's own tests (marked @pytest.mark.exercise('N.M')): its verdict")
