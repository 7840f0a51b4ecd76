"""What machine measured a figure: the prose prints it beside the figure (`make docs`)."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path


def cpu_model() -> str:
    """The processor's name, as the OS gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(tree: str) -> dict:
    """{cpu, cpus, python, system, tree}: what measured, on which tree of the workshop."""
    return {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "system": f"{platform.system()} {platform.machine()}", "tree": tree}


def said(made: dict, command: str) -> str:
    """'on 2026-12-06 by `make figures` (Intel(R) Xeon(R) Processor, 2 cores, Python 3.11.7)' from {at, machine}."""
    box = made.get("machine", {})
    where = f"{box['cpu']}, {box['cpus']} cores" if box.get("cpu") else f"{box.get('cpus', '?')} cores"
    return f"on {made['at'][:10]} by `{command}` ({where}, Python {box.get('python', '?')})"
