"""A disk that fills up mid-run, or a runs folder that is read-only: a clear error,
nothing recorded is lost, and ``tiller resume`` goes on once there is room again.

The real-disk tests mount a small tmpfs (and a read-only bind mount), and the folder
turned read-only mid-run trains as the unprivileged user ``nobody`` (root may write
anywhere), so they need root; elsewhere they skip and the in-process test still
covers the database path.
"""

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tiller.store import Store, StoreWriteError
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tests.test_resume import SERIES, epochs_by_series, resume_command


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB file system of its own, unmounted afterwards."""
    where = tmp_path / "disk"
    where.mkdir()
    try:
        mount("-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(folder) -> int:
    """Write to ``folder`` until the disk is full; returns the bytes written."""
    written, chunk = 0, b"\0" * (1 << 20)
    with open(folder / "filler.bin", "wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for size in (4096, 512, 1):  # the last scraps too: nothing is left for the trainer
            try:
                while True:
                    written += handle.write(b"\0" * size)
            except OSError:
                pass
    return written


def test_a_full_disk_stops_training_clearly_and_resume_goes_on_after_space_is_freed(small_disk):
    runs_dir = small_disk / "runs"
    proc = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=5")
    store = Store(runs_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        fill(small_disk)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, output
    assert "training stopped: " in output and f"tiller resume {run_id}" in output, output
    assert "Traceback" not in output
    assert "disk is full" in output or "No space left on device" in output, output

    # What was written before is all there and readable, the run is not left "running".
    trained = epochs_by_series(store, run_id)
    done = trained["val/loss"]
    assert done == list(range(1, len(done) + 1)) and all(epochs == done for epochs in trained.values())
    assert store.run(run_id)["status"] in ("failed", "crashed")
    assert not list((runs_dir / run_id / "checkpoints").glob(".*.tmp"))  # no half-written checkpoint left

    (small_disk / "filler.bin").unlink()
    resumed = resume_command(runs_dir, run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert store.run(run_id)["status"] == "finished"
    assert epochs_by_series(store, run_id) == {key: [1, 2, 3, 4, 5] for key in SERIES}


@pytest.fixture
def read_only_runs(small_disk):
    """A runs folder holding one crashed run, seen through a read-only bind mount."""
    runs_dir = small_disk / "runs"
    store = Store(runs_dir)
    run_id = store.create_run(model="mlp", dataset="digits", run_id="halted")
    store.add_config_version(run_id, {"model_name": "mlp", "num_epochs": 2}, source="cli", epoch=1)
    store.update_run(run_id, status="failed")
    store.close()
    view = small_disk / "read-only"
    view.mkdir()
    mount("--bind", str(runs_dir), str(view))
    try:
        mount("-o", "remount,bind,ro", str(view))
        yield view
    finally:
        subprocess.run(["umount", str(view)], capture_output=True)


def test_a_read_only_runs_folder_is_refused_with_a_clear_error(read_only_runs):
    for command in (["train", "--set", 'model_name="mlp"'], ["resume", "halted"]):
        done = subprocess.run([sys.executable, "-m", "tiller", *command, "--runs-dir", str(read_only_runs)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stderr.startswith("tiller: cannot "), done.stderr
        assert "read-only" in done.stderr or "readonly" in done.stderr or "unable to open" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_database_that_turns_read_only_mid_run_raises_without_losing_rows(tmp_path):
    store = Store(tmp_path)
    writable = store.db.conn
    with pytest.raises(StoreWriteError, match=f"cannot write to {store.db_path}: attempt to write a readonly"):
        with store.start_run(model="mlp", dataset="digits", run_id="r") as run:
            run.log(1, {"val/loss": 0.5})
            run.flush()
            # From now on SQLite itself refuses every write, as on a file system remounted read-only.
            store.db.conn = sqlite3.connect(f"file:{store.db_path}?mode=ro", uri=True, check_same_thread=False)
            run.log(2, {"val/loss": 0.4})
            run.flush()  # raises; leaving the block must not hide it behind its own failed bookkeeping
    store.db.conn.close()
    store.db.conn = writable
    assert store.metrics(["r"])["epoch"].tolist() == [1]


NOBODY = 65534


@pytest.fixture
def nobodys_folder():
    """A folder the unprivileged user ``nobody`` owns and can reach (pytest's tmp_path is root's alone)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to train as an unprivileged user")
    folder = Path(tempfile.mkdtemp(prefix="tiller-nobody-"))
    folder.chmod(0o755)
    os.chown(folder, NOBODY, NOBODY)
    yield folder
    subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
    shutil.rmtree(folder)


def as_nobody(folder: Path, *tiller_args: str, **popen) -> subprocess.Popen:
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-m", "tiller", *tiller_args, "--runs-dir", str(folder / "runs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(folder)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def test_a_runs_folder_turned_read_only_mid_run_stops_training_clearly_and_resume_goes_on(nobodys_folder):
    runs_dir = nobodys_folder / "runs"
    proc = as_nobody(nobodys_folder, "train", "--set", 'model_name="mlp"', "--set", "num_epochs=5",
                     "--set", "batch_size=1")
    try:
        # Only once the trainer made the database and its run folder may this (root) process open it.
        wait_for(lambda: runs_dir.is_dir() and any(path.is_dir() for path in runs_dir.iterdir()), "the run folder",
                 proc)
        store = Store(runs_dir)
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        subprocess.run(["chmod", "-R", "a-w", str(runs_dir)], check=True)  # what `chmod` does to a user's folder
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 1, output
    assert "tiller: training stopped: " in output and "Permission denied" in output, output
    assert "Everything written before is kept" in output and f"tiller resume {run_id}" in output, output
    assert "Traceback" not in output

    trained = epochs_by_series(store, run_id)
    done = trained["val/loss"]
    assert done == list(range(1, len(done) + 1)) and all(epochs == done for epochs in trained.values())
    assert store.run(run_id)["status"] in ("failed", "crashed")

    subprocess.run(["chmod", "-R", "u+w", str(runs_dir)], check=True)
    resumed = as_nobody(nobodys_folder, "resume", run_id)
    resumed_output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, resumed_output
    assert store.run(run_id)["status"] == "finished"
    assert epochs_by_series(store, run_id) == {key: [1, 2, 3, 4, 5] for key in SERIES}
