"""``Run``: the handle a training loop logs through.

    with store.start_run(model="mlp", dataset="digits") as run:
        for epoch in range(1, 6):
            ...
            run.log(epoch, {"train/loss": 0.3, "val/accuracy": 0.9, "lr": 1e-3})

Leaving the block marks the run finished; an exception marks it failed with the
traceback (and re-raises); Ctrl-C marks it stopped.

A ``Run`` from ``start_run`` or ``reopen_run`` holds the run's ownership lock
(``tiller.store.ownership``) until it leaves its block: no second process can write the run
meanwhile.

``log`` returns without touching the disk: a background ``MetricWriter``
commits what was logged, in batches. ``flush`` waits for it; the built-in
trainer flushes at every epoch boundary, ``checkpoint`` flushes first (a
checkpoint is never ahead of its metrics) and leaving the block flushes too.
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tiller.store.db import StoreWriteError
from tiller.store.ownership import Ownership
from tiller.store.paths import run_dir_for
from tiller.store.rows import metric_rows
from tiller.store.writer import MetricWriter

if TYPE_CHECKING:
    from tiller.store.store import Store

HEARTBEAT_INTERVAL_S = 5.0


class Run:
    def __init__(self, store: "Store", run_id: str, ownership: Ownership | None = None):
        self.store = store
        self.id = run_id
        self.dir: Path = run_dir_for(store.runs_dir, run_id)
        self.ownership = ownership  # released when the block is left, after the run's end is recorded
        self._final_status = "finished"
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None
        self._writer: MetricWriter | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> "Run":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writer = MetricWriter(self.store.write_metric_rows, name=f"metrics-{self.id}")
        self._beater = threading.Thread(target=self._beat_forever, name=f"heartbeat-{self.id}", daemon=True)
        self._beater.start()
        if self.ownership is not None and not self.ownership.locked:
            self.event("warning", f"Not locked to one process: {self.ownership.why_unlocked}, so nothing keeps "
                       "a second process (a tiller resume from another shell) from writing this run too.")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stop_beating.set()
        if self._beater is not None:
            self._beater.join(timeout=HEARTBEAT_INTERVAL_S)
        lost = self._close_writer()
        try:
            self._record_end(exc_type, exc, tb, lost)
        except StoreWriteError:
            # The database takes no writes (disk full, read-only). An error already on its
            # way out says more than this one; the run reads as crashed once the process is gone.
            if exc_type is None and lost is None:
                raise
        finally:
            if self.ownership is not None:  # only now: the end is recorded, another process may take over
                self.ownership.release()
        if exc_type is None and lost is not None:
            raise lost  # the loop ended well, but its last metrics are not in the database
        return False  # never swallow the exception

    def _close_writer(self) -> BaseException | None:
        """Write the last metrics and stop the writer; the error if they could not be written."""
        writer, self._writer = self._writer, None
        if writer is None:
            return None
        try:
            writer.close()
        except Exception as error:
            return error
        return None

    def _record_end(self, exc_type, exc, tb, lost: BaseException | None) -> None:
        if lost is not None:
            message = f"Could not write the last metrics: {type(lost).__name__}: {lost}"
            self.event("error", message)
            if exc_type is None:  # the lost metrics fail a run that otherwise ended well
                self.store.update_run(self.id, status="failed", error=message)
                return
        if exc_type is None:
            self.store.update_run(self.id, status=self._final_status)
        elif issubclass(exc_type, KeyboardInterrupt):
            self.event("warning", "Interrupted from the keyboard; run stopped.")
            self.store.update_run(self.id, status="stopped")
        else:
            text = "".join(traceback.format_exception(exc_type, exc, tb))
            self.event("error", f"Run failed: {exc_type.__name__}: {exc}")
            self.store.update_run(self.id, status="failed", error=text)

    def _beat_forever(self) -> None:
        while not self._stop_beating.wait(HEARTBEAT_INTERVAL_S):
            try:
                self.store.beat(self.id)
            except Exception:  # a missed beat must never kill training
                pass

    def mark_stopped(self) -> None:
        """The run ends on a user's stop request: record ``stopped``, not ``finished``."""
        self._final_status = "stopped"

    # -------------------------------------------------------------- logging

    def log(self, epoch: int, metrics: Mapping[str, float] | None = None, **named: float) -> None:
        """Log one epoch's metrics: ``{"train/loss": ...}`` and/or ``lr=...``.

        Returns at once; the rows are committed in the background (see ``flush``).
        Outside a ``with`` block it writes synchronously.
        """
        rows = metric_rows(self.id, epoch, {**(metrics or {}), **named})
        if self._writer is None:
            self.store.write_metric_rows(rows)
        else:
            self._writer.put(rows)

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything logged so far is committed to the database."""
        if self._writer is not None:
            self._writer.flush(timeout)

    def event(self, level: str, message: str, epoch: int | None = None) -> None:
        self.store.add_event(self.id, level, message, epoch)

    def config_version(self, config: Mapping[str, Any], *, source: str, reason: str = "", epoch: int,
                       change_id: str = "") -> int:
        return self.store.add_config_version(self.id, config, source=source, reason=reason, epoch=epoch,
                                             change_id=change_id)

    def val_samples(self, *, labels, sample_ids: list[str], class_names: list[str], task: str = "multiclass",
                    train_counts: list[int] | None = None) -> None:
        self.store.record_val_samples(self.id, labels=labels, sample_ids=sample_ids, class_names=class_names,
                                      task=task, train_counts=train_counts)

    def predictions(self, epoch: int, probs) -> None:
        self.store.record_predictions(self.id, epoch, probs)

    def set_status(self, status: str) -> None:
        self.store.update_run(self.id, status=status)

    def checkpoint(self, *, kind: str, epoch: int, path: str | Path, metric: str = "", value: float | None = None) -> None:
        self.flush()  # a resumed run must find the metrics of every epoch up to its checkpoint
        self.store.record_checkpoint(self.id, kind=kind, epoch=epoch, path=path, metric=metric, value=value)
