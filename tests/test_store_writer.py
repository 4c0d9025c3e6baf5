"""Background metric writing (``MetricWriter``, ``Run.log``/``flush``), the
clustered metrics table and the fast read path."""

import math
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlite_utils

from tiller.store import Store
from tiller.store.migrations import MIGRATIONS
from tiller.store.writer import MetricWriter

REPO_ROOT = Path(__file__).resolve().parent.parent


class FlakyRows:
    """A write function that fails the first ``failures`` times, keeping what it committed."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.committed: list[tuple] = []

    def __call__(self, rows):
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        self.committed.extend(rows)


def rows(n: int, start: int = 0) -> list[tuple]:
    return [("r", "train", "loss", epoch, float(epoch), 0.0) for epoch in range(start, start + n)]


def test_flush_commits_everything_put_in_order():
    target = FlakyRows()
    writer = MetricWriter(target)
    for start in range(0, 100, 10):
        writer.put(rows(10, start))
    writer.flush()
    assert [row[3] for row in target.committed] == list(range(100))
    assert writer.backlog == 0
    writer.close()


class CountingRows(FlakyRows):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __call__(self, rows):
        self.calls += 1
        super().__call__(rows)


def test_a_loop_logging_every_step_gets_a_commit_per_interval_not_per_step():
    target = CountingRows()
    writer = MetricWriter(target, interval=30.0)
    for epoch in range(100):
        writer.put(rows(1, start=epoch))
        time.sleep(0.001)  # a training step; time enough for a writer that commits every row
    writer.flush()  # the epoch boundary: no waiting out the interval
    assert target.calls <= 2  # the first row at once, the rest when flushed
    assert [row[3] for row in target.committed] == list(range(100))
    writer.close()


def test_a_failed_write_keeps_its_rows_and_reports_the_error():
    target = FlakyRows(failures=1)
    writer = MetricWriter(target)
    writer.put(rows(3))
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    with pytest.raises(OSError, match="disk full"):  # the next log call hears of it too
        writer.put(rows(2, start=3))
    writer.flush()  # tries the kept rows again, now successfully
    assert [row[3] for row in target.committed] == [0, 1, 2, 3, 4]
    writer.close()


def test_close_raises_when_the_last_rows_cannot_be_written():
    writer = MetricWriter(FlakyRows(failures=10**9))
    writer.put(rows(1))
    with pytest.raises(OSError):
        writer.close()


def test_log_returns_while_the_disk_is_busy(store):
    """The training thread must not wait for a commit: hold the write and log anyway."""
    release, started = threading.Event(), threading.Event()
    real_write = store.write_metric_rows

    def slow_write(batch):
        started.set()
        release.wait(timeout=30)  # were log blocking, the backlog check below would fail, not hang
        real_write(batch)

    store.write_metric_rows = slow_write
    with store.start_run(model="mlp", dataset="digits") as run:
        run.log(1, {"train/loss": 1.0})
        assert started.wait(10)
        for epoch in range(2, 6):
            run.log(epoch, {"train/loss": 1.0 / epoch})  # would hang here if log waited for the disk
        assert run._writer.backlog == 5
        release.set()
        run.flush()
        assert store.metrics([run.id])["epoch"].tolist() == [1, 2, 3, 4, 5]


def test_metrics_that_cannot_be_written_at_the_end_fail_the_run_loudly(store, monkeypatch):
    def full_disk(batch):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "write_metric_rows", full_disk)
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        with store.start_run(model="mlp", dataset="digits") as run:
            run.log(1, {"train/loss": 0.5})
    record = store.run(run.id)
    assert record["status"] == "failed" and "disk is full" in record["error"]
    assert "Could not write the last metrics" in store.events(run.id)["message"].iloc[0]


def test_a_checkpoint_is_never_ahead_of_its_metrics(store, tmp_path):
    with store.start_run(model="mlp", dataset="digits") as run:
        run.log(1, {"val/loss": 0.5})
        run.checkpoint(kind="last", epoch=1, path=tmp_path / "last.pt")
        # read from a second connection, as `tiller resume` in another process would
        assert Store(store.runs_dir).metrics([run.id])["epoch"].tolist() == [1]


def test_a_value_that_is_not_a_number_is_refused_at_the_call(store):
    with store.start_run(model="mlp", dataset="digits") as run:
        with pytest.raises(TypeError, match="'val/loss' must be a number"):
            run.log(1, {"train/loss": 0.5, "val/loss": "low"})


def test_nan_and_inf_read_back_as_logged(store):
    with store.start_run(model="mlp", dataset="digits") as run:
        run.log(1, {"train/loss": float("nan"), "val/loss": float("inf"), "lr": 0.1})
    frame = store.metrics([run.id])
    values = dict(zip(frame["split"] + "/" + frame["name"], frame["value"]))
    assert math.isnan(values["train/loss"]) and values["val/loss"] == float("inf") and values["/lr"] == 0.1


CRASHING_TRAINER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {root!r})
    from tiller.store import Store
    store = Store({runs!r})
    with store.start_run(model="mlp", dataset="digits", run_id="crash") as run:
        for epoch in (1, 2, 3):
            for step in range(50):  # a loop that logs every step, inside epochs
                run.log(epoch * 1000 + step, {{"train/loss": 1.0 / (step + 1)}})
            run.log(epoch, {{"val/loss": 1.0 / epoch}})
            run.flush()  # the epoch boundary
        run.log(4, {{"val/loss": 0.25}})  # epoch 4 in progress, not flushed
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_process_keeps_every_flushed_epoch(tmp_path):
    runs = tmp_path / "runs"
    script = CRASHING_TRAINER.format(root=str(REPO_ROOT), runs=str(runs))
    done = subprocess.run([sys.executable, "-c", script], timeout=120)
    assert done.returncode == -signal.SIGKILL
    metrics = Store(runs).metrics(["crash"])
    val = metrics[metrics["split"] == "val"]["epoch"].tolist()
    assert val[:3] == [1, 2, 3]  # epoch 4 may or may not have made it
    assert (metrics["split"] == "train").sum() == 150


def test_reads_are_consistent_while_a_writer_commits(tmp_path):
    """Each row's value encodes its own key; a read that mixed two snapshots would misalign them."""
    writer_store, reader = Store(tmp_path), Store(tmp_path)
    run_id = writer_store.create_run(model="mlp", dataset="digits", run_id="busy")
    stop = threading.Event()

    def write():
        epoch = 0
        while not stop.is_set():
            epoch += 1
            writer_store.log_metrics(run_id, epoch, {"train/loss": epoch + 0.1, "val/loss": epoch + 0.2})

    thread = threading.Thread(target=write)
    thread.start()
    try:
        for _ in range(100):
            frame = reader.metrics([run_id])
            offsets = [{"train": 0.1, "val": 0.2}[split] for split in frame["split"]]
            assert (frame["value"] - frame["epoch"] - offsets).abs().max() < 1e-9 if len(frame) else True
    finally:
        stop.set()
        thread.join()


def test_migration_clusters_existing_metrics_without_losing_any(tmp_path):
    db = sqlite_utils.Database(tmp_path / "tiller.db")
    for index, migration in enumerate(MIGRATIONS[:4], start=1):
        migration(db)
        db.execute(f"PRAGMA user_version = {index}")
    db["runs"].insert({"id": "old", "name": "old", "status": "finished", "created": 1.0, "updated": 1.0,
                       "heartbeat": 1.0})
    db["metrics"].insert_all([{"run_id": "old", "epoch": e, "split": s, "name": "loss", "value": e / 10, "time": 1.0}
                              for e in (2, 1, 3) for s in ("val", "train")])
    db.conn.commit()
    db.conn.close()

    store = Store(tmp_path)
    assert "WITHOUT ROWID" in store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'metrics'").fetchone()[0]
    assert store.db["metrics"].count == 6
    frame = store.metrics(["old"])
    assert frame[["split", "epoch"]].values.tolist() == [["train", 1], ["train", 2], ["train", 3],
                                                         ["val", 1], ["val", 2], ["val", 3]]
    assert store.run("old")["epoch"] == 3
