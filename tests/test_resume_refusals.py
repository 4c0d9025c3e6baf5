"""``tiller resume`` refuses what it cannot continue, and changes nothing when it does: a run of
the user's own training loop (only their script has its model and data), and a checkpoint
ahead of the database's metrics (a database restored from an older backup)."""

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap

import sqlite_utils
from streamlit.testing.v1 import AppTest

from tiller.store import Store
from tiller.store.migrations import MIGRATIONS, _add_run_trainer
from tiller.store.paths import DB_FILENAME
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tests.test_resume import kill_and_see_it_crashed, pause_mid_epoch, resume_command
from tiller.trainer.engine.checkpoint import checkpoint_path, load_checkpoint

OWN_LOOP = textwrap.dedent(
    """
    import sys, time
    import tiller

    with tiller.run({"model_name": "mlp", "num_epochs": 1000, "learning_rate": 0.01}, runs_dir=sys.argv[1]) as run:
        for epoch in run.epochs():
            time.sleep(0.1)  # the training of a loop of the user's own
            run.log(train_loss=1 / epoch, val_loss=2 / epoch, val_accuracy=1 - 1 / (epoch + 1),
                    lr=run.config.learning_rate)
    """
)


def everything_recorded(store: Store, run_id: str) -> dict:
    """What a resume must leave alone: metrics (with their times), events, config history, checkpoints."""
    record = store.run(run_id)
    return {
        "metrics": store.metrics([run_id]).to_dict("records"),
        "events": store.events(run_id).to_dict("records"),
        "versions": store.config_versions(run_id)[["version", "epoch", "source"]].to_dict("records"),
        "checkpoints": store.checkpoints(run_id).to_dict("records"),
        "run": (record["status"], record["pid"], record["epoch"]),
    }


def test_resume_refuses_a_run_of_the_users_own_loop_and_leaves_its_metrics(runs_store, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loop = subprocess.Popen([sys.executable, "-c", OWN_LOOP, str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run_id = wait_for(lambda: only_run(runs_store), "the run is created", loop)
        wait_for(lambda: epochs_logged(runs_store, run_id) >= 2, "two epochs", loop)
        kill_and_see_it_crashed(runs_store, run_id, loop)
    finally:
        loop.kill()
    before = everything_recorded(runs_store, run_id)

    refused = resume_command(tmp_path, run_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"cannot resume: run {run_id} was trained by a training loop of your own" in refused.stderr
    assert "its metrics are left as they are. Run your script again instead" in refused.stderr
    assert "tiller.run cannot take up an existing run" in refused.stderr
    assert everything_recorded(runs_store, run_id) == before
    assert not checkpoint_path(tmp_path / run_id, "last").exists()

    # Nor does tiller set send it a change that nothing would ever read.
    sent = subprocess.run([sys.executable, "-m", "tiller", "set", run_id, "learning_rate=0.02",
                           "--runs-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert sent.returncode == 2 and "ran in a training loop of your own" in sent.stderr, sent.stderr
    assert "tiller resume" in sent.stderr and "run your script again" in sent.stderr
    assert everything_recorded(runs_store, run_id) == before

    # The dashboard does not send the user to that command either.
    at = AppTest.from_file(str(ROOT / "dashboard" / "app_pages" / "run.py"), default_timeout=30)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    shown = "\n".join(str(element.value) for element in at.info)
    assert "which `tiller resume` cannot continue: run your script again" in shown
    assert f"tiller resume {run_id}" not in shown


def test_resume_refuses_a_checkpoint_newer_than_the_database_restored_from_a_backup(tmp_path):
    runs_dir, backup = tmp_path / "runs", tmp_path / "backup.db"
    proc = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=6")
    store = Store(runs_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        with sqlite3.connect(runs_dir / DB_FILENAME) as live, sqlite3.connect(backup) as copy:
            live.backup(copy)  # a consistent copy, as a backup tool takes it
        wait_for(lambda: epochs_logged(store, run_id) >= 3, "epoch 3", proc)
        pause_mid_epoch(store, run_id, proc)
        kill_and_see_it_crashed(store, run_id, proc)
    finally:
        proc.kill()
    store.close()
    checkpointed = load_checkpoint(checkpoint_path(runs_dir / run_id, "last"))["epoch"]

    for side_file in runs_dir.glob(DB_FILENAME + "*"):  # tiller.db, -wal, -shm: the newer database goes
        side_file.unlink()
    shutil.copy(backup, runs_dir / DB_FILENAME)
    store = Store(runs_dir)
    in_backup = epochs_logged(store, run_id)
    assert in_backup < checkpointed
    before = everything_recorded(store, run_id)

    refused = resume_command(runs_dir, run_id)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (f"holds epoch {checkpointed}, but the database has metrics only up to epoch {in_backup} for this run: "
            "the database is older than the checkpoint") in refused.stderr
    assert "without metrics for good, so nothing was changed. Put back the database" in refused.stderr
    assert everything_recorded(store, run_id) == before
    assert load_checkpoint(checkpoint_path(runs_dir / run_id, "last"))["epoch"] == checkpointed


def test_runs_from_before_the_trainer_column_are_told_apart_by_what_they_wrote(tmp_path):
    db = sqlite_utils.Database(tmp_path / DB_FILENAME)
    before = MIGRATIONS.index(_add_run_trainer)
    for migration in MIGRATIONS[:before]:
        migration(db)
    db.execute(f"PRAGMA user_version = {before}")
    for run_id, hot_keys, first_source in [("tiller_train", None, "cli"), ("own_loop", '["learning_rate"]', "api"),
                                           ("api_without_hot_keys", None, "api"), ("only_logged", None, None)]:
        db["runs"].insert({"id": run_id, "status": "stopped", "hot_keys": hot_keys, "heartbeat": 0.0, "created": 0.0})
        if first_source:
            for version, source in ((1, first_source), (2, "cli")):
                db["config_versions"].insert({"run_id": run_id, "version": version, "epoch": 1, "config": "{}",
                                              "diff": "{}", "source": source, "reason": "", "time": 0.0})
    db.conn.close()

    store = Store(tmp_path)
    trainers = {run_id: store.run(run_id)["trainer"] for run_id in store.runs()["id"]}
    assert trainers == {"tiller_train": "built-in", "own_loop": "own loop", "api_without_hot_keys": "own loop",
                        "only_logged": "own loop"}
