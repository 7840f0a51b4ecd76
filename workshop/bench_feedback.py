"""`make bench-feedback`: per exercise, the seconds from `make check EX=N.M` to a verdict.

An attendee runs an exercise's own tests after every try, so what matters is how long
the verdict takes: on the untouched stub (it must fail at once, naming the exercise), on
a wrong-but-plausible attempt where the tests keep one (a test marked
`@pytest.mark.wrong_attempt("N.M")`: the verdict's message against the usual mistake), and
on the solution (it must pass). Each is a fresh `pytest` process, as the attendee's is.

The stubs are measured on a copy of the workshop whose chapters before N are caught up
(`workshop catch-up N`), as an attendee at chapter N has them. Targets (issue 23): every
verdict within 10 s on 2 cores, the median within 5 s. The command exits 1 on a miss.

    python -m workshop.bench_feedback [--only 5.3 ...]
"""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import exercises, machine, target

EACH_AT_MOST, MEDIAN_AT_MOST = 10.0, 5.0   # seconds
COPIED = ("solutions", "chapters", "workshop", "tests", "pyproject.toml")


def _pytest(cwd: Path, *args: str) -> tuple[float, int]:
    """Seconds and exit code of one pytest process, as `make check` runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORKSHOP_TARGET", "PYTEST_ADDOPTS")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=cwd, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started, done.returncode


def wrong_attempts(tests: Path) -> dict[str, list[str]]:
    """exercise id -> node ids of the tests marked @pytest.mark.wrong_attempt(id)."""
    found: dict[str, list[str]] = {}
    for path in sorted(tests.glob("test_ch*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            for call in (n for deco in node.decorator_list for n in ast.walk(deco) if isinstance(n, ast.Call)):
                if isinstance(call.func, ast.Attribute) and call.func.attr == "wrong_attempt":
                    for arg in call.args:
                        found.setdefault(arg.value, []).append(f"tests/{path.name}::{node.name}")
    return found


def measure(root: Path, only: list[str] | None = None) -> list[dict]:
    ids = dict.fromkeys(e.id for e in exercises.list_exercises(root))   # an exercise in parts is listed once
    chosen = [i for i in ids if not only or i in only]
    wrong = wrong_attempts(root / "tests")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-feedback-") as tmp:
        copy = Path(tmp) / "workshop"
        copy.mkdir()
        for name in COPIED:
            source = root / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy / name)
        caught_up = 0
        for exercise in chosen:
            chapter = int(exercise.split(".")[0])
            if chapter != caught_up and chapter > 1:   # the chapters before hold their solutions, this one its stubs
                subprocess.run([sys.executable, "-m", "workshop", "catch-up", str(chapter), "--root", str(copy)],
                               cwd=copy, check=True, stdout=subprocess.DEVNULL)
                caught_up = chapter
            stub, stub_rc = _pytest(copy, "--exercise", exercise, "--target", "chapters")
            solved, solved_rc = _pytest(root, "--exercise", exercise, "--target", "solutions")
            mistaken = [_pytest(root, node, "--target", "solutions") for node in wrong.get(exercise, [])]
            rows.append({"exercise": exercise, "stub_s": stub, "stub_failed": stub_rc == 1,
                         "wrong_s": max((s for s, _ in mistaken), default=None),
                         "wrong_named": all(rc == 0 for _, rc in mistaken) if mistaken else None,
                         "solution_s": solved, "solution_passed": solved_rc == 0})
    return rows


def verdicts(rows: list[dict]) -> list[str]:
    """What misses a target, one line each; [] when every target is met."""
    misses = []
    for row in rows:
        for kind in ("stub_s", "wrong_s", "solution_s"):
            if row[kind] is not None and row[kind] > EACH_AT_MOST:
                misses.append(f"{row['exercise']}: {kind[:-2]} verdict in {row[kind]:.1f} s (target {EACH_AT_MOST:g} s)")
        if not row["stub_failed"]:
            misses.append(f"{row['exercise']}: the untouched stub did not fail its own tests")
        if not row["solution_passed"]:
            misses.append(f"{row['exercise']}: the solution does not pass its own tests")
        if row["wrong_named"] is False:
            misses.append(f"{row['exercise']}: a wrong attempt's test does not pass (its message is not the one expected)")
    times = [row[kind] for row in rows for kind in ("stub_s", "wrong_s", "solution_s") if row[kind] is not None]
    if times and statistics.median(times) > MEDIAN_AT_MOST:
        misses.append(f"median verdict {statistics.median(times):.1f} s (target {MEDIAN_AT_MOST:g} s)")
    return misses


def table(rows: list[dict]) -> str:
    def cell(seconds, ok) -> str:
        return "-" if seconds is None else f"{seconds:5.1f} s{'' if ok in (True, None) else ' !'}"
    lines = [f"{'exercise':<9}{'stub (fails)':>14}{'wrong attempt':>15}{'solution':>11}"]
    for row in rows:
        lines.append(f"{row['exercise']:<9}{cell(row['stub_s'], row['stub_failed']):>14}"
                     f"{cell(row['wrong_s'], row['wrong_named']):>15}{cell(row['solution_s'], row['solution_passed']):>11}")
    times = [row[k] for row in rows for k in ("stub_s", "wrong_s", "solution_s") if row[k] is not None]
    if times:
        lines.append(f"median {statistics.median(times):.1f} s, slowest {max(times):.1f} s "
                     f"(targets: each within {EACH_AT_MOST:g} s, median within {MEDIAN_AT_MOST:g} s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench_feedback", description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", metavar="N.M", help="these exercises only")
    parser.add_argument("--out", metavar="FILE", help="also write the figures there as JSON (make docs quotes them "
                                                      "from slides/figures/feedback.json)")
    args = parser.parse_args(argv)
    rows = measure(target.ROOT, args.only)
    print(table(rows))
    if args.out:
        made = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "machine": machine.describe("solutions"), "rows": rows}
        Path(args.out).write_text(json.dumps(made, indent=1) + "\n")
    misses = verdicts(rows)
    for miss in misses:
        print(f"MISS {miss}")
    print("verdict: every target met" if not misses else f"verdict: {len(misses)} target(s) missed")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
