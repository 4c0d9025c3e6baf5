"""The Store: every query Tiller makes against ``runs/tiller.db``."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from tiller.store.advice import AdviceQueries
from tiller.store.configdiff import diff_configs
from tiller.store.db import DatabaseFiles, StoreReplaced, StoreWriteError, abandon, connect
from tiller.store.liveness import HEARTBEAT_TIMEOUT_S, process_gone
from tiller.store.ownership import Ownership, take_ownership
from tiller.store.predictions import Predictions, decode_labels, decode_probs, encode_probs, samples_row
from tiller.store.paths import DB_FILENAME, make_run_id, resolve_runs_dir, run_dir_for
from tiller.store.rows import MetricRow, metric_rows, metrics_frame
from tiller.store.run import Run

STATUSES = ("running", "paused", "finished", "failed", "stopped")
LIVE_STATUSES = ("running", "paused")
LEVELS = ("info", "warning", "error")
SOURCES = ("user", "file", "llm", "cli", "trainer", "api")  # trainer: its own reaction, e.g. to a NaN loss; api: tiller.run
# Which trainer writes a run (``runs.trainer``). Only the built-in one (``tiller train``)
# checkpoints what ``tiller resume`` needs; a loop of the user's own (``tiller.run``, or
# logging through ``start_run``) holds its model and data in its own script.
BUILT_IN, OWN_LOOP = "built-in", "own loop"
TRAINERS = (BUILT_IN, OWN_LOOP)


class RunNotFound(LookupError):
    """No run matches the given id or prefix."""


def encode_hot_keys(hot_keys: Iterable[str] | None) -> str | None:
    """The ``runs.hot_keys`` column: a JSON list of key names, or NULL for "every hot key".

    Only the shape is checked here; which names are hot keys is the trainer's
    schema to say (``tiller.trainer.steering.config.check_run_hot_keys``), and the store stays
    free of it.
    """
    if hot_keys is None:
        return None
    if isinstance(hot_keys, (str, bytes)):  # a lone name would be read as its letters
        raise TypeError(f"hot_keys must be a list of key names, not {type(hot_keys).__name__} {hot_keys!r}")
    keys = list(dict.fromkeys(hot_keys))
    not_names = [key for key in keys if not isinstance(key, str)]
    if not_names:
        raise TypeError(f"hot_keys must be key names (strings); got {not_names!r}")
    return json.dumps(keys)


def decode_hot_keys(text: Any) -> list[str] | None:
    """The column read back; NULL (pandas may give None or NaN) is ``None``, every hot key."""
    return json.loads(text) if isinstance(text, str) else None


class Store(AdviceQueries):
    """A connection to one runs folder's database.

    Both the trainer (writer of its own run's rows) and the dashboard (reader)
    use this class; nothing else in Tiller writes SQL.
    """

    def __init__(self, runs_dir: str | os.PathLike | None = None):
        self.runs_dir = resolve_runs_dir(runs_dir)
        self.db_path = self.runs_dir / DB_FILENAME
        try:
            self.db = connect(self.db_path)
        except (sqlite3.OperationalError, OSError) as exc:  # WAL needs its side files: even reading writes
            raise StoreWriteError(f"cannot open {self.db_path}: {exc}") from exc
        self.files = DatabaseFiles(self.db_path)  # what the connection opened, to notice a file moved under it
        self._replaced: StoreReplaced | None = None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            if self._replaced is None:  # a connection to replaced files is never closed (see db.abandon)
                self.db.conn.close()

    def still_in_place(self) -> bool:
        """Whether the database files are still the ones this store opened; if not, it writes no more."""
        try:
            self._check_files_in_place()
        except StoreReplaced:
            return False
        return True

    def _check_files_in_place(self) -> None:
        """Raise ``StoreReplaced`` once tiller.db or its -wal/-shm was moved, replaced or deleted.

        From then on the connection is left open and unused (``abandon``): a write
        through it would be lost, and closing it would damage the new files.
        """
        with self._lock:
            if self._replaced is None:
                try:
                    self.files.check_in_place()
                except StoreReplaced as exc:
                    self._replaced = exc
                    abandon(self.db.conn)
            if self._replaced is not None:
                raise StoreReplaced(str(self._replaced))

    @contextmanager
    def _write(self):
        """One write transaction; a database that takes no writes raises ``StoreWriteError``.

        Disk full, a read-only file or folder, a lock held past the busy timeout,
        an I/O error: SQLite reports each as an ``OperationalError``, rolled back.
        Other errors (a broken constraint) are bugs and pass through as they are.
        Database files moved, restored or deleted under the connection raise
        ``StoreReplaced`` (a ``StoreWriteError``) before anything is written.
        """
        with self._lock:
            self._check_files_in_place()
            try:
                with self.db.conn:
                    yield
            except sqlite3.OperationalError as exc:
                raise StoreWriteError(f"cannot write to {self.db_path}: {exc}") from exc
            self._check_files_in_place()  # moved during the transaction: this commit went to the old files

    # ----------------------------------------------------------------- writes

    def create_run(
        self,
        *,
        model: str,
        dataset: str,
        name: str | None = None,
        run_id: str | None = None,
        hot_keys: Iterable[str] | None = None,
        trainer: str = BUILT_IN,
    ) -> str:
        """Insert a new running run and return its id (unique, path-safe).

        ``hot_keys``: the hot config keys the run's training loop reads (its
        others stay fixed); ``None`` for every hot key, as the built-in trainer.
        ``trainer``: ``BUILT_IN`` or ``OWN_LOOP``, which trainer writes the run
        (``start_run``, the API of users' own loops, defaults to ``OWN_LOOP``).
        """
        if trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {trainer!r}; expected one of {TRAINERS}")
        base = run_id or make_run_id(model)
        encoded_hot_keys = encode_hot_keys(hot_keys)  # a bad list fails before anything is written
        now = time.time()
        with self._write():
            candidate, n = base, 1
            while self.db["runs"].count_where("id = ?", [candidate]):
                n += 1
                candidate = f"{base}_{n}"
            run_dir = run_dir_for(self.runs_dir, candidate)
            self.db["runs"].insert(
                {
                    "id": candidate,
                    "name": name or candidate,
                    "status": "running",
                    "model": model,
                    "dataset": dataset,
                    "run_dir": str(run_dir),
                    "created": now,
                    "updated": now,
                    "heartbeat": now,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "error": None,
                    "hot_keys": encoded_hot_keys,
                    "trainer": trainer,
                }
            )
        return candidate

    def update_run(self, run_id: str, **fields: Any) -> None:
        if "status" in fields and fields["status"] not in STATUSES:
            raise ValueError(f"unknown status {fields['status']!r}; expected one of {STATUSES}")
        now = time.time()
        fields.setdefault("updated", now)
        with self._write():
            self.db["runs"].update(run_id, fields)

    def beat(self, run_id: str) -> None:
        """Record that the run's process is alive."""
        with self._write():
            self.db.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", [time.time(), run_id])

    def log_metrics(self, run_id: str, epoch: int, metrics: Mapping[str, float]) -> None:
        """Store one epoch's metrics now; keys are ``"split/name"`` or a bare ``"name"``.

        Logging the same (epoch, split, name) again replaces the value. A
        training loop logs through ``Run.log`` instead, which does not wait.
        """
        self.write_metric_rows(metric_rows(run_id, epoch, metrics))

    def write_metric_rows(self, rows: Sequence[MetricRow]) -> None:
        """Commit rows from ``metric_rows`` in one transaction; marks their runs updated."""
        if not rows:
            return
        now = time.time()
        with self._write():
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, split, name, epoch, value, time) VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self.db.conn.executemany(
                "UPDATE runs SET updated = ?, heartbeat = ? WHERE id = ?",
                [(now, now, run_id) for run_id in {row[0] for row in rows}],
            )

    def add_config_version(
        self,
        run_id: str,
        config: Mapping[str, Any],
        *,
        source: str,
        reason: str = "",
        epoch: int,
        change_id: str = "",
    ) -> int:
        """Record ``config`` as the run's next version; returns the version number.

        ``change_id`` names the request it answers (``adv_…#1,3`` for advice
        suggestions 1 and 3), so the audit trail links back to it.
        """
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {SOURCES}")
        with self._write():
            previous = self._latest_config_row(run_id)
            version = previous["version"] + 1 if previous else 1
            old = json.loads(previous["config"]) if previous else None
            self.db["config_versions"].insert(
                {
                    "run_id": run_id,
                    "version": version,
                    "epoch": int(epoch),
                    "config": json.dumps(dict(config), ensure_ascii=False),
                    "diff": json.dumps(diff_configs(old, config) if old else {}, ensure_ascii=False),
                    "source": source,
                    "reason": reason,
                    "time": time.time(),
                    "change_id": change_id,
                }
            )
        return version

    def add_event(self, run_id: str, level: str, message: str, epoch: int | None = None) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
        with self._write():
            self.db["events"].insert(
                {"run_id": run_id, "time": time.time(), "epoch": epoch, "level": level, "message": message}
            )

    def record_checkpoint(
        self, run_id: str, *, kind: str, epoch: int, path: str | Path, metric: str = "", value: float | None = None
    ) -> None:
        with self._write():
            self.db["checkpoints"].upsert(
                {
                    "run_id": run_id,
                    "kind": kind,
                    "epoch": int(epoch),
                    "path": str(path),
                    "metric": metric,
                    "value": value,
                    "time": time.time(),
                },
                pk=("run_id", "kind"),
            )

    def record_val_samples(
        self, run_id: str, *, labels, sample_ids: list[str], class_names: list[str], task: str = "multiclass",
        train_counts: list[int] | None = None,
    ) -> None:
        """The run's validation samples (labels, ids, class names), once per run."""
        row = samples_row(run_id, labels, sample_ids, class_names, task, train_counts)
        with self._write():
            self.db["val_samples"].upsert(row, pk="run_id")

    def record_predictions(self, run_id: str, epoch: int, probs) -> None:
        """One epoch's class probabilities, (samples, classes), in val-sample order."""
        blob, rows, cols = encode_probs(probs)
        with self._write():
            self.db["predictions"].upsert(
                {"run_id": run_id, "epoch": int(epoch), "probs": blob, "rows": rows, "cols": cols,
                 "time": time.time()},
                pk=("run_id", "epoch"),
            )

    # ------------------------------------------------------------------ reads

    def _query(self, sql: str, params: Iterable[Any] = ()) -> pd.DataFrame:
        with self._lock:
            return pd.read_sql_query(sql, self.db.conn, params=list(params))

    def _latest_config_row(self, run_id: str) -> dict | None:
        rows = list(
            self.db.query(
                "SELECT version, config FROM config_versions WHERE run_id = ? ORDER BY version DESC LIMIT 1",
                [run_id],
            )
        )
        return rows[0] if rows else None

    def runs(self) -> pd.DataFrame:
        """All runs, newest first, with progress and best validation accuracy.

        ``status`` reads ``crashed`` for a live run whose heartbeat stopped.
        """
        return self._runs_where("1", [])

    def run(self, run_id: str) -> dict[str, Any]:
        df = self._runs_where("r.id = ?", [run_id])
        if df.empty:
            raise RunNotFound(f"no run with id {run_id!r}")
        return df.iloc[0].to_dict()

    def _runs_where(self, condition: str, params: list[Any]) -> pd.DataFrame:
        df = self._query(
            f"""
            SELECT r.*,
              (SELECT MAX(epoch) FROM metrics m WHERE m.run_id = r.id) AS epoch,
              (SELECT json_extract(c.config, '$.num_epochs') FROM config_versions c
                 WHERE c.run_id = r.id ORDER BY c.version DESC LIMIT 1) AS num_epochs,
              (SELECT MAX(value) FROM metrics m
                 WHERE m.run_id = r.id AND m.split = 'val' AND m.name = 'accuracy') AS best_val_accuracy
            FROM runs r WHERE {condition} ORDER BY r.created DESC, r.id DESC
            """,
            params,
        )
        live = df["status"].isin(LIVE_STATUSES)
        silent = time.time() - df["heartbeat"] > HEARTBEAT_TIMEOUT_S
        gone = pd.Series([is_live and process_gone(pid, host) for is_live, pid, host
                          in zip(live, df["pid"], df["host"])], index=df.index, dtype=bool)
        df.loc[live & (silent | gone), "status"] = "crashed"
        df["hot_keys"] = df["hot_keys"].map(decode_hot_keys).astype(object)
        return df

    def run_hot_keys(self, run_id: str) -> list[str] | None:
        """The hot keys the run's loop reads, as it declared them; ``None``: every hot key."""
        with self._lock:
            row = self.db.execute("SELECT hot_keys FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise RunNotFound(f"no run with id {run_id!r}")
        return decode_hot_keys(row[0])

    def find_run(self, ref: str) -> str:
        """Resolve a run reference: an exact id, a unique id prefix, or ``latest``.

        An empty reference (``tiller stop "$RUN"`` with ``RUN`` unset) is refused: as a
        prefix it would match every run, and with one run it would pick that one.
        """
        if not ref.strip():
            raise RunNotFound(f"no run given (the run reference {ref!r} is empty): name a run id, a unique "
                              "prefix of it, or 'latest'; `tiller runs` lists them")
        with self._lock:
            if ref == "latest":
                rows = list(self.db.query("SELECT id FROM runs ORDER BY created DESC, id DESC LIMIT 1"))
            else:
                rows = list(self.db.query("SELECT id FROM runs WHERE id = ?", [ref])) or list(
                    self.db.query("SELECT id FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id", [len(ref), ref])
                )
        if not rows:
            raise RunNotFound(f"no run matches {ref!r}")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise RunNotFound(f"{ref!r} matches several runs ({ids}); give more of the id")
        return rows[0]["id"]

    def metrics(
        self,
        run_ids: Iterable[str] | None = None,
        names: Iterable[str] | None = None,
        splits: Iterable[str] | None = None,
        epochs: Iterable[int] | None = None,
    ) -> pd.DataFrame:
        """Metrics in long form (run_id, epoch, split, name, value, time).

        One series after another: sorted by run_id, split, name, then epoch,
        the order they are stored in. A NaN that was logged reads back as NaN.
        """
        where, params = [], []
        for column, values in (("run_id", run_ids), ("name", names), ("split", splits), ("epoch", epochs)):
            if values is not None:
                values = list(values)
                where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
                params.extend(values)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock, self._read_snapshot():
            series = self.db.execute(
                f"SELECT run_id, split, name, COUNT(*) FROM metrics {clause}"
                " GROUP BY run_id, split, name ORDER BY run_id, split, name",
                params,
            ).fetchall()
            numbers = self.db.execute(
                f"SELECT epoch, COALESCE(value, 'nan'), time FROM metrics {clause} ORDER BY run_id, split, name, epoch",
                params,
            )
            return metrics_frame(series, numbers)

    @contextmanager
    def _read_snapshot(self):
        """One read transaction: queries inside it see the same commits, whatever a trainer writes meanwhile."""
        self.db.execute("BEGIN")
        try:
            yield
        finally:
            self.db.execute("COMMIT")

    def config_versions(self, run_id: str) -> pd.DataFrame:
        """The run's config history; ``config`` and ``diff`` parsed to dicts."""
        df = self._query("SELECT * FROM config_versions WHERE run_id = ? ORDER BY version", [run_id])
        df["config"] = df["config"].map(json.loads)
        df["diff"] = df["diff"].map(json.loads)
        return df

    def current_config(self, run_id: str) -> dict[str, Any]:
        """The config the run trains with now (its latest version)."""
        with self._lock:
            row = self._latest_config_row(run_id)
        if row is None:
            raise RunNotFound(f"run {run_id!r} has no recorded config")
        return json.loads(row["config"])

    def events(self, run_id: str, limit: int | None = None) -> pd.DataFrame:
        """The run's events, newest first."""
        sql = "SELECT time, epoch, level, message FROM events WHERE run_id = ? ORDER BY id DESC"
        params: list[Any] = [run_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return self._query(sql, params)

    def checkpoints(self, run_id: str) -> pd.DataFrame:
        return self._query("SELECT * FROM checkpoints WHERE run_id = ? ORDER BY kind", [run_id])

    # -------------------------------------------------------------- tracking

    def prediction_epochs(self, run_id: str) -> list[int]:
        """Epochs of ``run_id`` with stored validation predictions, ascending."""
        with self._lock:
            rows = self.db.execute("SELECT epoch FROM predictions WHERE run_id = ? ORDER BY epoch", [run_id])
            return [row[0] for row in rows.fetchall()]

    def val_sample_ids(self, run_id: str) -> list[str] | None:
        """The ids of the run's validation samples, in order; ``None`` if none were recorded."""
        with self._lock:
            row = self.db.execute("SELECT sample_ids FROM val_samples WHERE run_id = ?", [run_id]).fetchone()
        return None if row is None else json.loads(row[0])

    def predictions(self, run_id: str, epoch: int) -> Predictions | None:
        """The validation predictions of one epoch, or ``None`` if none were stored."""
        with self._lock:
            samples = self.db.execute(
                "SELECT task, class_names, labels, sample_ids, train_counts FROM val_samples WHERE run_id = ?", [run_id]
            ).fetchone()
            probs = self.db.execute(
                "SELECT probs, rows, cols FROM predictions WHERE run_id = ? AND epoch = ?", [run_id, int(epoch)]
            ).fetchone()
        if samples is None or probs is None:
            return None
        task, class_names, labels, sample_ids, train_counts = samples
        return Predictions(
            epoch=int(epoch),
            probs=decode_probs(*probs),
            labels=decode_labels(labels),
            sample_ids=json.loads(sample_ids),
            class_names=json.loads(class_names),
            task=task,
            train_counts=json.loads(train_counts) if train_counts else None,
        )

    def start_run(self, *, model: str, dataset: str, name: str | None = None, run_id: str | None = None,
                  hot_keys: Iterable[str] | None = None, trainer: str = OWN_LOOP):
        """Open a run for logging; use as ``with store.start_run(...) as run:``.

        ``hot_keys`` names the hot config keys the run's loop reads (see ``create_run``);
        ``trainer`` says which trainer writes it (the built-in one passes ``BUILT_IN``).
        The run is this process's until its block ends (see ``claim_run``).
        """
        new_id = self.create_run(model=model, dataset=dataset, name=name, run_id=run_id, hot_keys=hot_keys,
                                 trainer=trainer)
        try:
            ownership = self.claim_run(new_id)
        except BaseException as exc:  # its folder is someone else's (or unwritable): the row must not read as live
            with contextlib.suppress(StoreWriteError):  # the error on its way out says more
                self.update_run(new_id, status="failed", error=f"could not take the run: {exc}")
            raise
        return Run(self, new_id, ownership)

    def claim_run(self, run_id: str) -> Ownership:
        """Lock ``run_id`` to this process, or raise ``RunOwned`` naming the live process that holds it.

        Release it with ``release()``, or hand it to ``reopen_run``, whose block releases it.
        """
        try:
            return take_ownership(run_dir_for(self.runs_dir, run_id), run_id)
        except OSError as exc:  # the runs folder takes no writes
            raise StoreWriteError(f"cannot write to {self.runs_dir / run_id}: {exc}") from exc

    def reopen_run(self, run_id: str, ownership: Ownership | None = None) -> Run:
        """Take an existing run up again in this process (``tiller resume``): running, beating from here.

        Claims the run first (``RunOwned`` if a live process holds it), unless the
        caller already did and passes its ``ownership``.
        """
        ownership = ownership or self.claim_run(run_id)
        now = time.time()
        try:
            self.update_run(run_id, status="running", error=None, heartbeat=now, pid=os.getpid(),
                            host=socket.gethostname())
        except BaseException:
            ownership.release()
            raise
        return Run(self, run_id, ownership)
