"""Opening the database: one file, WAL, a busy timeout, migrations on open."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import sqlite_utils

from store.migrations import migrate

BUSY_TIMEOUT_MS = 10_000  # writers wait this long for a lock before raising


class StoreWriteError(RuntimeError):
    """The database took no write: disk full, read-only, locked too long, or an I/O error.

    Nothing committed before is lost; the write that failed was rolled back.
    """


def connect(path: Path) -> sqlite_utils.Database:
    """Open (creating and migrating if needed) the database at ``path``.

    ``check_same_thread=False`` because Streamlit serves sessions from several
    threads and the trainer beats its heartbeat from one; ``Store`` guards the
    connection with a lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    # WAL lets the dashboard read while a trainer writes; NORMAL sync survives a
    # process crash (only an OS crash can lose the last commit).
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    migrate(db)
    return db


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL; a switch another connection is making at once is waited for.

    SQLite answers "database is locked" at once, without its busy handler, when two
    connections change the journal mode of a new file together (the demo's trainer
    and its dashboard do), so this retries for as long as the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
