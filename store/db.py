"""Opening the database: one file, WAL, a busy timeout, migrations on open.

Also what can go wrong with the file itself, each with a named exception whose
message says what to do: a file that is not a (Tiller) database or is corrupt
(``StoreCorrupt``), and a file moved, restored or deleted under an open
connection (``StoreReplaced``).
"""

from __future__ import annotations

import ctypes
import os
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from tiller.store.migrations import migrate
from tiller.store.paths import DB_FILENAME

BUSY_TIMEOUT_MS = 10_000  # writers wait this long for a lock before raising


class StoreWriteError(RuntimeError):
    """The database took no write: disk full, read-only, locked too long, or an I/O error.

    Nothing committed before is lost; the write that failed was rolled back.
    """


class StoreReplaced(StoreWriteError):
    """``tiller.db`` or its ``-wal``/``-shm`` file was moved, replaced or deleted under an open connection.

    The connection still writes, but into files no other process reads: its rows
    would be lost, and closing it would copy stale pages over the new file. So the
    store writes nothing more through it and never closes it (see ``abandon``).
    """


class StoreCorrupt(RuntimeError):
    """``tiller.db`` is not a database, not Tiller's, or corrupt (truncated, overwritten)."""


def connect(path: Path) -> sqlite_utils.Database:
    """Open (creating and migrating if needed) the database at ``path``.

    ``check_same_thread=False`` because Streamlit serves sessions from several
    threads and the trainer beats its heartbeat from one; ``Store`` guards the
    connection with a lock. A file that is not a Tiller database raises
    ``StoreCorrupt`` before anything is written to it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _refuse_other_databases(conn, path)  # before WAL: switching it rewrites the file's header
        # WAL lets the dashboard read while a trainer writes; NORMAL sync survives a
        # process crash (only an OS crash can lose the last commit).
        _use_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        db = sqlite_utils.Database(conn)
        migrate(db)
    except BaseException as exc:
        conn.close()
        corrupt = corruption_in(exc, path)
        if corrupt is not None and corrupt is not exc:
            raise corrupt from exc
        raise
    return db


def _refuse_other_databases(conn: sqlite3.Connection, path: Path) -> None:
    """An SQLite file that holds tables but never ran a Tiller migration belongs to something else."""
    # One read transaction, so one snapshot: another process may be creating the schema right now.
    # Two plain statements, not one over pragma_user_version: SQLite's authorizer reports that
    # table-valued pragma as an update of sqlite_master, and the dashboard must prepare no write.
    conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    finally:
        conn.execute("COMMIT")
    if version == 0 and tables:
        names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' LIMIT 4")]
        raise StoreCorrupt(corrupt_message(path, f"is an SQLite database, but not Tiller's (it holds tables "
                                                 f"{', '.join(names)})"))


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


# ------------------------------------------------------------------ corruption

def corrupt_message(path: Path, what: str) -> str:
    """One line: the file, what is wrong with it, and what to do."""
    return (f"{path} {what}. Move it aside (with its -wal and -shm files, if any) to start a new database "
            f"there, restore it from a backup, or point --runs-dir (or $TILLER_RUNS_DIR) at another folder")


def corruption_in(exc: BaseException, path: Path) -> StoreCorrupt | None:
    """``exc`` as a ``StoreCorrupt`` when it (or what caused it) says the file is not a sound database.

    SQLite's "file is not a database" (SQLITE_NOTADB) and "database disk image is
    malformed" (SQLITE_CORRUPT) reach Python as ``sqlite3.DatabaseError`` itself, not
    one of its subclasses (locked, read-only and disk-full are ``OperationalError``);
    pandas wraps them in an error of its own, with the original as its cause.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StoreCorrupt):
            return exc
        if type(exc) is sqlite3.DatabaseError:
            text = str(exc)
            what = ("is not a database (truncated, overwritten, or another kind of file)" if "not a database" in text
                    else "is corrupt or truncated")
            return StoreCorrupt(corrupt_message(path, f"{what}: SQLite says \"{text}\""))
        exc = exc.__cause__ or exc.__context__
    return None


# ------------------------------------------------------- files moved under us

def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


class DatabaseFiles:
    """Which files ``tiller.db``, its ``-wal`` and its ``-shm`` were when a connection opened them.

    An open connection keeps using the files it opened, whatever happens to their
    names: after ``rm tiller.db-wal`` it commits into a WAL no other process sees
    (its rows are lost when it ends, and its last close copies them over the pages
    other processes committed since: their rows vanish); after ``mv tiller.db``
    it writes into the moved file. Checking that the names still lead to the same
    files (device and inode) costs three ``stat`` calls per write transaction.
    """

    def __init__(self, path: Path):
        self.path = path
        self.names = (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
        self.opened = self._identities()

    def _identities(self) -> tuple[tuple[int, int] | None, ...]:
        return tuple(_file_identity(name) for name in self.names)

    def check_in_place(self) -> None:
        """Raise ``StoreReplaced`` when a file this connection opened is no longer where it was."""
        for name, opened, now in zip(self.names, self.opened, self._identities()):
            if opened is not None and now != opened:
                raise StoreReplaced(replaced_message(name, gone=now is None, database=name == self.path))


def replaced_message(name: Path, *, gone: bool, database: bool) -> str:
    """What happened to ``name``, what it means for the rows, and how to avoid it."""
    if database:
        what = (f"{name} was {'moved or deleted' if gone else 'replaced by another file (a restored backup?)'} "
                f"while this process had it open: what it wrote from then on would go to the old file, not to "
                f"{name}")
    else:
        what = (f"{name} was {'deleted' if gone else 'replaced'} while this process had the database open: the "
                f"rows in it not yet copied into {name.parent / DB_FILENAME} are gone, what this process wrote "
                f"from then on would be lost, and its last close would overwrite rows other processes wrote "
                f"meanwhile")
    return (f"{what}; so it writes nothing more to the database. Move, restore or delete {DB_FILENAME} and its "
            f"-wal and -shm files only while no trainer or dashboard uses {name.parent}")


_ABANDONED: list[sqlite3.Connection] = []  # for the record: connections left open on purpose (see abandon)


def abandon(conn: sqlite3.Connection) -> None:
    """Keep ``conn`` open until the process ends, so SQLite never closes it.

    Closing the last connection to a database checkpoints its WAL into the database
    file and deletes the WAL by name. For a connection whose files were replaced
    that would copy its stale pages over what other processes committed since, or
    delete the new file's WAL. When the process ends the operating system drops its
    file handles and locks, and nothing is written. Python would close a connection
    it frees even at exit (a module-level list is emptied then), so one reference is
    added that is never given back.
    """
    _ABANDONED.append(conn)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(conn))
