"""``MetricWriter``: logging that never waits for the disk.

A training loop calls ``Run.log`` between steps; a commit costs tens to
hundreds of microseconds (more on a busy or slow disk), and that time would be
stolen from training. So ``put`` only appends the rows to a list and wakes a
background thread, which writes everything that has piled up in one
transaction, at most once per ``COMMIT_INTERVAL_S`` unless someone is waiting
in ``flush``. So a loop that logs every step pays for a commit a few times a
second, not every step, and the thread keeps up however often ``log`` is called.

Durability: ``flush`` blocks until every row put so far is committed. The
trainer flushes at each epoch boundary, before it saves a checkpoint, so a
crash loses at most the rows of the epoch in progress. A failed write keeps
its rows; the error is raised to the caller at the next ``put`` or ``flush``,
and the next ``flush`` tries those rows again.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

from tiller.store.rows import MetricRow

WriteRows = Callable[[Sequence[MetricRow]], None]
# Rows logged between flushes wait at most this long: short enough for a live
# dashboard (it refreshes every 2 s), long enough that a loop logging every step
# does not share the interpreter with one commit per step.
COMMIT_INTERVAL_S = 0.25


class MetricWriter:
    def __init__(self, write_rows: WriteRows, name: str = "metric-writer", interval: float = COMMIT_INTERVAL_S):
        self._write_rows = write_rows
        self._interval = interval
        self._last_commit = 0.0  # time.monotonic() of the last commit
        self._urgent = False  # someone waits in flush(): write now
        self._wake = threading.Condition()
        self._pending: list[MetricRow] = []
        self._put = 0  # rows handed to put() so far
        self._written = 0  # rows committed so far
        self._error: BaseException | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._write_forever, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ the caller

    def put(self, rows: Sequence[MetricRow]) -> None:
        """Queue ``rows`` for writing and return at once.

        Raises the error of an earlier failed write (its rows are kept).
        """
        with self._wake:
            first = not self._pending
            self._pending.extend(rows)
            self._put += len(rows)
            error = self._error
            if first and error is None:  # the writer only needs to hear that rows exist
                self._wake.notify_all()
        if error is not None:
            raise error

    def flush(self, timeout: float | None = None) -> None:
        """Block until every row put so far is committed; raise if writing failed.

        ``timeout`` (seconds) raises ``TimeoutError`` when the disk is slower than that.
        """
        with self._wake:
            if self._error is not None:  # try the kept rows again
                self._error = None
                self._wake.notify_all()
            target = self._put
            if self._written < target:
                self._urgent = True
                self._wake.notify_all()
            done = self._wake.wait_for(lambda: self._written >= target or self._error is not None, timeout)
            if self._error is not None:
                raise self._error
            if not done:
                raise TimeoutError(f"{target - self._written} metric rows not written after {timeout} s")

    def close(self) -> None:
        """Flush, then stop the thread. Raises if the last rows could not be written."""
        try:
            self.flush()
        finally:
            with self._wake:
                self._closing = True
                self._wake.notify_all()
            self._thread.join()

    @property
    def backlog(self) -> int:
        """Rows put but not yet committed."""
        with self._wake:
            return self._put - self._written

    # ------------------------------------------------------- the writer thread

    def _write_forever(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._closing or (self._pending and self._error is None))
                if not self._pending or self._error is not None:
                    return  # closing, and nothing left that can be written
                # Let rows pile up until the interval has passed, unless a flush is waiting.
                wait = self._last_commit + self._interval - time.monotonic()
                if wait > 0:
                    self._wake.wait_for(lambda: self._urgent or self._closing, timeout=wait)
                batch, self._pending, self._urgent = self._pending, [], False
            try:
                self._write_rows(batch)
            except BaseException as error:  # noqa: BLE001 - handed to the caller, never lost
                with self._wake:
                    self._pending[:0] = batch  # keep order: the failed batch goes first
                    self._error = error
                    self._wake.notify_all()
                continue
            with self._wake:
                self._written += len(batch)
                self._last_commit = time.monotonic()
                self._wake.notify_all()
