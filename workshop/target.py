"""Which tree the chapters are imported from: the solutions or the attendee's exercises.

One setting decides it (WORKSHOP_TARGET, or pytest's --target), so the same tests
and notebooks run the attendee's code or the reference solution.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from . import settings as settings_mod

ROOT = Path(__file__).resolve().parent.parent
TREES = ("solutions", "chapters")
CHAPTER_MODULE = re.compile(r"ch\d\d_\w+$")


def tree(target: str | None = None) -> Path:
    target = target or settings_mod.load().workshop_target
    if target not in TREES:
        raise settings_mod.SettingsError(
            f"target {target!r} is not a tree of this workshop: use one of {', '.join(TREES)}."
        )
    return ROOT / target


def activate(target: str | None = None) -> Path:
    """Put the chosen tree first on sys.path so `import ch02_segmented` imports from it.

    Switching trees forgets chapter modules already imported from the other one.
    """
    chosen = tree(target)
    others = {str(ROOT / t) for t in TREES} - {str(chosen)}
    sys.path[:] = [p for p in sys.path if p not in others and p != str(chosen)]
    sys.path.insert(0, str(chosen))
    for name in [m for m in sys.modules if CHAPTER_MODULE.match(m.split(".")[0])]:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if not module_file.startswith(str(chosen)):
            del sys.modules[name]
    return chosen


def pythonpath(target: str | None = None) -> str:
    """PYTHONPATH for a worker process that must import the same tree and the kit."""
    return f"{tree(target)}:{ROOT}"


def chapters(target: str | None = None) -> list[str]:
    """The chapter packages present in the tree, in order."""
    return sorted(p.name for p in tree(target).glob("ch[0-9][0-9]_*") if p.is_dir())
