"""A real trainer process, steered through its live config file mid-run."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiller.store import Store
from tiller.trainer.engine.checkpoint import load_checkpoint
from tiller.trainer.steering.live_config import parse_live_file, request_change, request_control

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 120


def start_trainer(runs_dir: Path, *overrides: str) -> subprocess.Popen:
    # batch_size=1 makes an epoch of the digits MLP last about a second: time to edit.
    return start_train_command(runs_dir, ("batch_size=1", *overrides))


def start_train_command(runs_dir: Path, overrides, *options: str, **popen) -> subprocess.Popen:
    """``tiller train --set <override> ... <options>`` in a child process, its output piped."""
    command = [sys.executable, "-m", "tiller", "train", "--runs-dir", str(runs_dir), *options]
    for override in overrides:
        command += ["--set", override]
    # One thread: a tiny MLP gains nothing from more, and a loaded CI machine
    # slows an oversubscribed torch down many times over.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None and not condition():  # it may have finished just now
            pytest.fail(f"trainer exited ({proc.returncode}) before {what}:\n{proc.stdout.read()}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}:\n{proc.stdout.read()}")


def only_run(store: Store) -> str | None:
    runs = store.runs()
    return runs["id"].iloc[0] if len(runs) else None


def epochs_logged(store: Store, run_id: str) -> int:
    df = store.metrics([run_id], names=["lr"])
    return int(df["epoch"].max()) if len(df) else 0


def lr_by_epoch(store: Store, run_id: str) -> dict[int, float]:
    df = store.metrics([run_id], names=["lr"])
    return dict(zip(df["epoch"], df["value"]))


def start_and_finish_epoch_1(runs_dir: Path, *overrides: str):
    """A trainer process that has logged its first epoch, with its store, run id and live file."""
    proc = start_trainer(runs_dir, *overrides)
    store = Store(runs_dir)
    run_id = wait_for(lambda: only_run(store), "the run is created", proc)
    wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
    return proc, store, run_id, runs_dir / run_id / "config.json"


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


def test_lr_edit_reaches_the_optimizer_and_a_bad_edit_is_rejected(runs_dir):
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=40", "learning_rate=0.001")

    # A hand edit, as a text editor would make it: rewrite the file in place.
    data = json.loads(config_path.read_text())
    data["learning_rate"] = 0.01
    config_path.write_text(json.dumps(data, indent=2))
    wait_for(lambda: len(store.config_versions(run_id)) == 2, "the lr change is recorded", proc)
    applied = store.config_versions(run_id).iloc[1]
    assert applied["diff"] == {"learning_rate": [0.001, 0.01]}
    assert applied["source"] == "file"
    took_effect = int(applied["epoch"])

    # A bad edit: a frozen key and an out-of-range value. It must be refused.
    config_path.write_text(json.dumps({**data, "model_name": "resnet18", "dropout_rate": 3}))
    wait_for(lambda: "error" in set(store.events(run_id)["level"]), "the rejection event", proc)
    events = store.events(run_id)
    message = events[events["level"] == "error"]["message"].iloc[0]
    assert "model_name: fixed for the life of the run" in message
    assert "dropout_rate: input should be less than 1" in message
    rejected = list(config_path.parent.glob("config.rejected-*.json"))
    assert len(rejected) == 1 and '"resnet18"' in rejected[0].read_text()
    # The live file shows the config in force again.
    wait_for(lambda: parse_live_file(config_path.read_text()).values.get("model_name") == "mlp",
             "the live file is restored", proc)

    # Finish soon: num_epochs is hot too (from the dashboard's channel, source user).
    finish_at = epochs_logged(store, run_id) + 2
    request_change(config_path, {"num_epochs": finish_at}, source="user", reason="enough")
    assert proc.wait(timeout=TIMEOUT_S) == 0, proc.stdout.read()

    assert store.run(run_id)["status"] == "finished"
    lrs = lr_by_epoch(store, run_id)
    assert max(lrs) == finish_at
    assert all(lr == pytest.approx(0.001) for e, lr in lrs.items() if e < took_effect)
    assert all(lr == pytest.approx(0.01) for e, lr in lrs.items() if e >= took_effect)
    history = store.config_versions(run_id)
    assert history["source"].tolist() == ["cli", "file", "user"]
    assert history["config"].iloc[-1]["learning_rate"] == 0.01  # the bad edit left no trace in the config
    last = load_checkpoint(runs_dir / run_id / "checkpoints" / "last.pt")
    assert last["epoch"] == finish_at
    assert {g["lr"] for g in last["optimizer"]["param_groups"]} == {0.01}


def test_pause_resume_and_stop_take_effect_within_an_epoch(runs_dir):
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=200")

    request_control(config_path, "pause")
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the pause", proc, timeout=10)
    paused_at = epochs_logged(store, run_id)
    time.sleep(2.5)  # longer than two epochs: a running loop would have logged more
    assert epochs_logged(store, run_id) <= paused_at + 1  # only the epoch it paused in may finish later

    request_control(config_path, "run")
    wait_for(lambda: store.run(run_id)["status"] == "running", "the resume", proc, timeout=10)
    wait_for(lambda: epochs_logged(store, run_id) >= paused_at + 2, "training goes on", proc)

    request_control(config_path, "stop")
    assert proc.wait(timeout=10) == 0
    assert store.run(run_id)["status"] == "stopped"
    messages = " ".join(store.events(run_id)["message"])
    assert "Paused in epoch" in messages and "Resumed" in messages and "Stopped during epoch" in messages
    assert epochs_logged(store, run_id) < 200


def test_switching_the_lr_schedule_mid_run_bends_the_curve(runs_dir):
    proc, store, run_id, config_path = start_and_finish_epoch_1(runs_dir, "num_epochs=40", "learning_rate=0.01")

    request_change(config_path, {"lr_scheduler": "StepLR", "lr_step_size": 1, "lr_gamma": 0.5},
                   source="user", reason="decay from here")
    wait_for(lambda: len(store.config_versions(run_id)) == 2, "the schedule change", proc)
    took_effect = int(store.config_versions(run_id).iloc[1]["epoch"])
    wait_for(lambda: epochs_logged(store, run_id) >= took_effect + 1, "two epochs on the new schedule", proc)
    request_change(config_path, {"num_epochs": epochs_logged(store, run_id) + 1}, source="user")
    assert proc.wait(timeout=TIMEOUT_S) == 0, proc.stdout.read()

    # StepLR is a function of progress: epoch e ends at 0.01 * 0.5 ** (e - 1).
    for epoch, lr in lr_by_epoch(store, run_id).items():
        expected = 0.01 if epoch < took_effect else 0.01 * 0.5 ** (epoch - 1)
        assert lr == pytest.approx(expected), epoch
