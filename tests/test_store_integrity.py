"""A tiller.db that is broken, or that is moved or deleted under running processes.

Broken (not a database, truncated, corrupt, another program's): every CLI command
and every dashboard page says so in one line naming the file and what to do, no
traceback. Moved or deleted while a trainer writes: the trainer stops writing
into the old file and says so, and the rows other processes write are kept.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tiller.store import Store
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for

PAGES = ROOT / "dashboard" / "app_pages"
PAGE_TIMEOUT_S = 30


def tiller(runs_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tiller", *args, "--runs-dir", str(runs_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------ broken files

def seeded_database(folder: Path) -> bytes:
    """A real Tiller database with a run and enough rows for several pages; its bytes."""
    store = Store(folder)
    store.create_run(model="mlp", dataset="digits", run_id="r1")
    store.add_config_version("r1", {"model_name": "mlp", "num_epochs": 3}, source="cli", epoch=1)
    for epoch in range(1, 300):
        store.log_metrics("r1", epoch, {"train/loss": 1 / epoch, "val/loss": 1 / epoch, "val/accuracy": 0.5})
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every row in tiller.db itself
    store.close()
    return (folder / "tiller.db").read_bytes()


def scribbled(data: bytes) -> bytes:
    """Page 1 and the schema intact, every later page overwritten: opens fine, fails when read."""
    page, keep = 4096, 8
    return data[:page * keep] + os.urandom(len(data) - page * keep)


def other_programs_database(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()


BROKEN = {  # kind of damage -> (how to make it from a good database's bytes, what the message says)
    "garbage": (lambda data: os.urandom(8192), "is not a database"),
    "text": (lambda data: b"not a database at all\n" * 300, "is not a database"),
    "truncated": (lambda data: data[: len(data) // 2], "is corrupt or truncated"),
    "header only": (lambda data: data[:100], "is corrupt or truncated"),
    "scribbled": (scribbled, "is corrupt or truncated"),
    "another program's": (None, "is an SQLite database, but not Tiller's"),
}


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory) -> bytes:
    return seeded_database(tmp_path_factory.mktemp("good"))


def broken_runs_dir(folder: Path, kind: str, good: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    make, _ = BROKEN[kind]
    if make is None:
        other_programs_database(folder / "tiller.db")
    else:
        (folder / "tiller.db").write_bytes(make(good))
    return folder


def assert_says_broken(text: str, runs_dir: Path, kind: str) -> None:
    assert "Traceback" not in text, text
    assert f"{runs_dir / 'tiller.db'} {BROKEN[kind][1]}" in text, text
    assert "Move it aside" in text and "restore it from a backup" in text and "--runs-dir" in text, text


@pytest.mark.parametrize("kind", list(BROKEN))
def test_runs_and_show_say_what_is_wrong_with_each_kind_of_broken_database(tmp_path, good_bytes, kind):
    runs_dir = broken_runs_dir(tmp_path / "runs", kind, good_bytes)
    before = (runs_dir / "tiller.db").read_bytes()
    for command in (["runs"], ["show", "r1"]):
        done = tiller(runs_dir, *command)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith("tiller: ") and done.stderr.count("\n") == 1, done.stderr  # one line
        assert_says_broken(done.stderr, runs_dir, kind)
    assert (runs_dir / "tiller.db").read_bytes() == before  # nothing written into it, not even WAL mode


COMMANDS = [
    ["runs"], ["show", "r1"], ["set", "r1", "learning_rate=0.01"], ["pause", "r1"], ["stop", "r1"],
    ["resume", "r1"], ["suggest", "r1", "--offline"], ["revert", "r1", "1"],
    ["train", "--set", 'model_name="mlp"', "--set", "num_epochs=1"],
    ["dashboard", "--no-browser", "--port", "8597"], ["demo", "--no-browser", "--port", "8598"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command[0])
def test_every_command_refuses_a_truncated_database_in_one_line(tmp_path, good_bytes, command):
    runs_dir = broken_runs_dir(tmp_path / "runs", "truncated", good_bytes)
    done = tiller(runs_dir, *command, timeout=60)  # the dashboard would serve until killed: it must not start
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith("tiller: ") and done.stderr.count("\n") == 1, done.stderr
    assert_says_broken(done.stderr, runs_dir, "truncated")
    assert not (runs_dir / "r1").exists()  # no live config written for a run nobody can see


@pytest.fixture
def broken_dashboard(tmp_path, monkeypatch, good_bytes, request):
    import streamlit as st

    runs_dir = broken_runs_dir(tmp_path / "runs", request.param, good_bytes)
    monkeypatch.setenv("TILLER_RUNS_DIR", str(runs_dir))
    st.cache_data.clear()
    st.cache_resource.clear()
    return runs_dir, request.param


@pytest.mark.parametrize("broken_dashboard", ["truncated", "scribbled"], indirect=True)
@pytest.mark.parametrize("page", ["runs.py", "run.py", "evaluation.py", "compare.py"])
def test_every_dashboard_page_shows_a_broken_database_as_an_error(broken_dashboard, page):
    runs_dir, kind = broken_dashboard
    at = AppTest.from_file(str(PAGES / page), default_timeout=PAGE_TIMEOUT_S)
    at.query_params["run"] = "r1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert_says_broken(errors[0], runs_dir, kind)


# ------------------------------------------------- files moved under a trainer

def series_epochs(runs_dir: Path, run_id: str) -> dict[str, list[int]]:
    store = Store(runs_dir)
    try:
        metrics = store.metrics([run_id])
        return {f"{split}/{name}": group["epoch"].tolist() for (split, name), group in metrics.groupby(["split", "name"])}
    finally:
        store.close()


def trainer_past_epoch_2(runs_dir: Path, epochs: int = 40):
    """A trainer of many one-second epochs that has logged two of them; the test's own connection closed."""
    proc = start_trainer(runs_dir, 'model_name="mlp"', f"num_epochs={epochs}")
    store = Store(runs_dir)
    run_id = wait_for(lambda: only_run(store), "the run is created", proc)
    wait_for(lambda: epochs_logged(store, run_id) >= 2, "epoch 2", proc)
    store.close()  # this process must not share the files the test is about to delete
    return proc, run_id


def test_deleting_the_wal_under_a_trainer_stops_it_and_a_later_run_keeps_its_rows(tmp_path):
    runs_dir = tmp_path / "runs"
    first, first_id = trainer_past_epoch_2(runs_dir)
    for suffix in ("-wal", "-shm"):
        (runs_dir / f"tiller.db{suffix}").unlink()

    later = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=3", "batch_size=64")
    later_out, _ = later.communicate(timeout=300)
    assert later.returncode == 0, later_out
    first_out, _ = first.communicate(timeout=300)  # before the fix it trained on, and its last close lost the rows

    assert first.returncode == 1, first_out
    assert f"tiller: training stopped: {runs_dir / 'tiller.db-wal'} was deleted while this process had" in first_out
    assert "writes nothing more to the database" in first_out and f"tiller resume {first_id}" in first_out
    assert "Traceback" not in first_out
    runs = Store(runs_dir).runs().set_index("id")
    later_id = next(run_id for run_id in runs.index if run_id != first_id)
    assert runs.loc[later_id, "status"] == "finished"
    assert series_epochs(runs_dir, later_id) == {name: [1, 2, 3] for name in series_epochs(runs_dir, later_id)}
    assert "val/loss" in series_epochs(runs_dir, later_id)


def test_moving_tiller_db_away_under_a_trainer_stops_it_writing_there(tmp_path):
    runs_dir = tmp_path / "runs"
    proc, run_id = trainer_past_epoch_2(runs_dir)
    moved = tmp_path / "moved.db"
    shutil.move(runs_dir / "tiller.db", moved)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1, out
    assert f"tiller: training stopped: {runs_dir / 'tiller.db'} was moved or deleted while this process had it open"\
        in out, out
    assert "Traceback" not in out
    # The moved file stopped growing when the trainer noticed: nothing lands there once it said so.
    size = moved.stat().st_size, Path(f"{runs_dir / 'tiller.db'}-wal").stat().st_size
    time.sleep(1.5)
    assert (moved.stat().st_size, Path(f"{runs_dir / 'tiller.db'}-wal").stat().st_size) == size


def test_the_dashboard_reads_a_restored_database_not_the_file_it_opened_first(tmp_path, monkeypatch):
    import streamlit as st

    runs_dir, backup = tmp_path / "runs", tmp_path / "backup"
    for folder, run_id in ((runs_dir, "before_restore"), (backup, "from_backup")):
        store = Store(folder)
        store.create_run(model="mlp", dataset="digits", run_id=run_id)
        store.close()
    monkeypatch.setenv("TILLER_RUNS_DIR", str(runs_dir))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(PAGES / "runs.py"), default_timeout=PAGE_TIMEOUT_S).run()
    assert "before_restore" in str([df.value for df in at.dataframe]) + str(at.markdown)

    # A restore: the backup's file takes tiller.db's name, the old -wal and -shm go.
    os.replace(backup / "tiller.db", runs_dir / "tiller.db")
    for suffix in ("-wal", "-shm"):
        (runs_dir / f"tiller.db{suffix}").unlink(missing_ok=True)
    st.cache_data.clear()  # the next refresh after the cache's few seconds
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = str([df.value for df in at.dataframe]) + str(at.markdown)
    assert "from_backup" in shown and "before_restore" not in shown
