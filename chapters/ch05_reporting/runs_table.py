# Exercise copy of solutions/ch05_reporting/runs_table.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""The `runs` table: one row per run, beside chapter 2's daily summaries (the same SQLite file).

Written by the report task with an upsert keyed by the run's id: a report written
twice (a redelivered task, a sweep that resent it) leaves one row, the same one.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing

from ch02_segmented import database

TABLE = "runs"
# column -> SQLite type; the JSON ones hold a dict or list
COLUMNS = {
    "run": "TEXT PRIMARY KEY", "day": "TEXT", "started": "REAL", "finished": "REAL", "outcome": "TEXT",
    "stations": "INTEGER", "done": "INTEGER", "dead_lettered": "INTEGER", "dead_reasons": "JSON",
    "missing": "INTEGER", "pending": "INTEGER", "api_requests": "INTEGER", "rate_limited": "INTEGER",
    "server_errors": "INTEGER", "no_answer": "INTEGER", "answer_lost": "INTEGER", "retries": "INTEGER", "stations_fetched": "INTEGER",
    "glitches_found": "INTEGER", "cost_micro": "INTEGER", "budget_micro": "INTEGER",
    "to_finish_micro": "INTEGER", "duration_s": "REAL", "stations_per_s": "REAL", "utilisation": "REAL",
    "reconciled": "INTEGER", "differences": "JSON",
}
JSON_COLUMNS = [name for name, kind in COLUMNS.items() if kind == "JSON"]
SCHEMA = f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(f'{c} {t}' for c, t in COLUMNS.items())})"


def connect(db: str | None = None) -> sqlite3.Connection:
    conn = database.connect(db)   # chapter 2's file, its summaries table in place
    conn.execute(SCHEMA)
    return conn


def upsert(row: dict, db: str | None = None) -> None:
    """Write the run's row; a run already there is replaced whole (the same report, written again)."""
    values = {c: json.dumps(row.get(c)) if c in JSON_COLUMNS else row.get(c) for c in COLUMNS}
    with closing(connect(db)) as conn, conn:
        conn.execute(f"INSERT OR REPLACE INTO {TABLE} ({', '.join(COLUMNS)}) "
                     f"VALUES ({', '.join(':' + c for c in COLUMNS)})", values)


def rows(db: str | None = None, day: str | None = None) -> list[dict]:
    """Every run (of `day`, if given), oldest first."""
    with closing(connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        where, params = ("WHERE day = ?", (day,)) if day else ("", ())
        found = [dict(row) for row in conn.execute(
            f"SELECT * FROM {TABLE} {where} ORDER BY started, run", params)]
    for row in found:
        for column in JSON_COLUMNS:
            row[column] = json.loads(row[column]) if row[column] else None
    return found


def row(run: str, db: str | None = None) -> dict | None:
    return next((r for r in rows(db) if r["run"] == run), None)
