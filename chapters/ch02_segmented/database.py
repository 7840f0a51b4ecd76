# Exercise copy of solutions/ch02_segmented/database.py, made by `python -m workshop exercises build`.
# Fill in each region marked "exercise N.M"; run this chapter's tests with --target chapters to check it.
"""The daily summaries in SQLite: one row per (station, date), written by upsert.

The file: the `db` argument, else the CH02_DB environment variable, else
ch02_segmented.sqlite3 in the system's temp folder.
"""
from __future__ import annotations

import os
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from workshop.stations import SUMMARY_FIELDS

TABLE = "daily_summaries"
COLUMNS = SUMMARY_FIELDS   # station, date, hours, glitches, temp_min, ...
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    station TEXT NOT NULL, date TEXT NOT NULL, hours INTEGER, glitches INTEGER,
    temp_min REAL, temp_max REAL, temp_mean REAL, humidity_mean REAL, rain_total REAL,
    PRIMARY KEY (station, date)
)"""


def path(db: str | os.PathLike | None = None) -> Path:
    return Path(db or os.environ.get("CH02_DB") or Path(tempfile.gettempdir()) / "ch02_segmented.sqlite3")


def connect(db: str | os.PathLike | None = None) -> sqlite3.Connection:
    """A connection with the table in place; several workers may write: wait for the lock, don't fail."""
    conn = sqlite3.connect(path(db), timeout=30)
    conn.execute(SCHEMA)
    return conn


def upsert(conn: sqlite3.Connection, summaries: list[dict]) -> None:
    """Write each summary; a (station, date) already there is updated, not duplicated or refused."""
    # exercise 2.3: one statement for the whole list (executemany): a new (station, date) is inserted, one already there gets every other column from the summary; never a duplicate row, never an error
    raise NotImplementedError("exercise 2.3: one statement for the whole list (executemany): a new (station, date) is inserted, one already there gets every other column from the summary; never a duplicate row, never an error")


def rows(db: str | os.PathLike | None = None, day: str | None = None) -> list[dict]:
    """Every row (of `day`, if given), ordered by station, as dicts like the summaries.

    Read-only: a wrong path raises, rather than creating an empty database that
    would make every station look missing.
    """
    file = path(db)
    if not file.exists():
        raise FileNotFoundError(
            f"no SQLite database at {file}: check the db argument or CH02_DB "
            f"(now {os.environ.get('CH02_DB')!r}), or run the persist segment first, which creates it.")
    with closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        where, params = ("WHERE date = ?", (day,)) if day else ("", ())
        return [dict(row) for row in conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM {TABLE} {where} ORDER BY station, date", params)]
