"""A trainer killed with SIGKILL mid-epoch reads as crashed at once, and ``tiller resume``
continues it from its last checkpoint: config history intact, epochs continuous, and the
numbers the same as if it had never stopped."""

import os
import socket
import subprocess
import sys
import time

import pytest
import torch

from tiller.store import Store
from tiller.store.liveness import process_gone
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tiller.trainer.engine.checkpoint import restore_training, training_payload
from tiller.trainer.cli.commands import main
from tiller.trainer.steering.config import validate_config
from tiller.trainer.steering.live_config import live_config_path, parse_live_file, request_change, request_control
from tiller.trainer.engine.state import build_state

SERIES = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr")


def resume_command(runs_dir, run_id: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tiller", "resume", run_id, "--runs-dir", str(runs_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def pause_mid_epoch(store: Store, run_id: str, proc) -> int:
    """Pause the trainer inside an epoch; returns the epoch it paused in."""
    request_control(live_config_path(store.runs_dir, run_id), "pause")
    wait_for(lambda: store.run(run_id)["status"] == "paused", "the pause", proc)
    return epochs_logged(store, run_id) + 1


def epochs_by_series(store: Store, run_id: str) -> dict[str, list[int]]:
    df = store.metrics([run_id])
    df["key"] = df["split"].where(df["split"] == "", df["split"] + "/") + df["name"]
    return {key: sorted(group["epoch"]) for key, group in df.groupby("key") if key in SERIES}


def kill_and_see_it_crashed(store: Store, run_id: str, proc) -> None:
    proc.kill()
    # Killed but not yet reaped (a zombie): already crashed, no heartbeat timeout needed.
    deadline = time.monotonic() + 10
    while store.run(run_id)["status"] != "crashed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.run(run_id)["status"] == "crashed"
    proc.wait()
    assert store.run(run_id)["status"] == "crashed"


def test_sigkill_mid_epoch_then_resume_keeps_history_and_numbering(tmp_path):
    runs_dir = tmp_path / "runs"
    proc = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=5")
    store = Store(runs_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", proc)
        config_path = live_config_path(runs_dir, run_id)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", proc)
        request_change(config_path, {"learning_rate": 0.002}, source="cli", reason="slower")
        wait_for(lambda: len(store.config_versions(run_id)) == 2, "the lr change", proc)
        paused_in = pause_mid_epoch(store, run_id, proc)
        # Saved while paused mid-epoch: pending at the crash, it must not be lost.
        request_change(config_path, {"weight_decay": 0.001}, source="cli", reason="pending at the crash")
        kill_and_see_it_crashed(store, run_id, proc)
    finally:
        proc.kill()
    checkpointed = paused_in - 1

    done = resume_command(runs_dir, run_id)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed at epoch {paused_in}/5" in done.stdout

    record = store.run(run_id)
    assert record["status"] == "finished" and record["pid"] != proc.pid
    assert epochs_by_series(store, run_id) == {key: [1, 2, 3, 4, 5] for key in SERIES}
    versions = store.config_versions(run_id)
    assert versions["version"].tolist() == [1, 2, 3]
    assert versions["diff"].iloc[1] == {"learning_rate": [0.001, 0.002]}
    pending = versions.iloc[2]
    assert list(pending["diff"]) == ["weight_decay"] and pending["diff"]["weight_decay"][1] == 0.001
    assert (pending["source"], pending["reason"], pending["epoch"]) == ("cli", "pending at the crash", paused_in)
    assert store.current_config(run_id)["learning_rate"] == 0.002
    messages = store.events(run_id)["message"].tolist()
    assert any(m.startswith(f"Resumed (crashed before) from the checkpoint of epoch {checkpointed}")
               for m in messages), messages
    assert parse_live_file(config_path.read_text()).control == "run"  # the pause left in the file was cleared
    checkpoints = store.checkpoints(run_id).set_index("kind")
    assert checkpoints.loc["last", "epoch"] == 5


def test_a_resumed_run_computes_what_an_uninterrupted_one_does(tmp_path):
    settings = ('model_name="mlp"', "num_epochs=3", "dropout_rate=0.3", "use_augmentation=true")
    straight_dir, broken_dir = tmp_path / "straight", tmp_path / "broken"
    straight = start_trainer(straight_dir, *settings)
    broken = start_trainer(broken_dir, *settings)
    store = Store(broken_dir)
    try:
        run_id = wait_for(lambda: only_run(store), "the run is created", broken)
        wait_for(lambda: epochs_logged(store, run_id) >= 1, "epoch 1", broken)
        pause_mid_epoch(store, run_id, broken)
        kill_and_see_it_crashed(store, run_id, broken)
        assert straight.wait(timeout=300) == 0
    finally:
        broken.kill()
        straight.kill()
    done = resume_command(broken_dir, run_id)
    assert done.returncode == 0, done.stdout + done.stderr

    def val_loss(runs_dir):
        s = Store(runs_dir)
        df = s.metrics([only_run(s)], names=["loss"], splits=["val"])
        return df["value"].tolist()

    # Same weights, moments and random streams (dropout, augmentation) after the restore:
    # the curves match to float precision, not just roughly.
    assert val_loss(broken_dir) == pytest.approx(val_loss(straight_dir), rel=1e-6, abs=1e-7)
    assert len(val_loss(broken_dir)) == 3


def test_resume_refuses_a_finished_run_and_unpauses_a_live_one(tmp_path, capsys):
    store = Store(tmp_path)
    finished = store.create_run(model="mlp", dataset="digits", run_id="done")
    store.add_config_version(finished, validate_config({}).model_dump(), source="cli", epoch=1)
    store.update_run(finished, status="finished")
    with pytest.raises(SystemExit) as exit_info:
        main(["resume", "done", "--runs-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "cannot resume: run done finished" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["set", "done", "learning_rate=0.01", "--runs-dir", str(tmp_path)])
    assert "not sent: run done finished" in capsys.readouterr().err

    halted = store.create_run(model="mlp", dataset="digits", run_id="halted")
    store.add_config_version(halted, validate_config({}).model_dump(), source="cli", epoch=1)
    store.update_run(halted, status="failed")
    main(["set", "halted", "learning_rate=0.01", "--runs-dir", str(tmp_path)])
    assert "applies when the run goes on: tiller resume halted" in capsys.readouterr().out

    live = store.create_run(model="mlp", dataset="digits", run_id="live")  # this process: alive
    store.add_config_version(live, validate_config({}).model_dump(), source="cli", epoch=1)
    store.update_run(live, status="paused")
    main(["resume", "live", "--runs-dir", str(tmp_path)])
    assert "resume sent to live" in capsys.readouterr().out
    assert parse_live_file(live_config_path(tmp_path, "live").read_text()).control == "run"


def test_a_dead_or_zombie_process_is_gone_but_a_live_or_remote_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while not process_gone(child.pid, socket.gethostname()) and time.monotonic() < deadline:
        time.sleep(0.05)  # exited but not reaped: a zombie
    assert process_gone(child.pid, socket.gethostname())
    child.wait()
    assert process_gone(child.pid, socket.gethostname())
    assert not process_gone(child.pid, "another-machine")  # there only the heartbeat can tell
    assert not process_gone(os.getpid(), socket.gethostname())
    assert not process_gone(None, socket.gethostname())


def test_a_checkpoint_restores_every_piece_of_training_state():
    config = validate_config({"model_name": "mlp", "num_epochs": 2, "model_ema": True,
                              "lr_scheduler": "ReduceLROnPlateau", "early_stopping": True})
    trained = build_state(config)
    loss = trained.model(torch.randn(8, *trained.data.val[0][0].shape)).sum()
    loss.backward()
    trained.optimizer.step()
    trained.ema.update(trained.model)
    trained.plateau.scale, trained.plateau.bad_epochs = 0.5, 2
    trained.early_stop.observe(1, 0.7, trained.evaluated_model)
    trained.best_val_accuracy = 0.8
    torch.rand(3)
    payload = training_payload(trained, 1)
    expected_draw = torch.rand(5)

    fresh = build_state(config)
    assert restore_training(fresh, payload) == []
    assert torch.equal(torch.rand(5), expected_draw)  # the random stream goes on where it was
    for (name, a), b in zip(trained.model.state_dict().items(), fresh.model.state_dict().values()):
        assert torch.equal(a, b), name
    moments = fresh.optimizer.state_dict()["state"]
    assert moments and all(torch.equal(moments[k]["exp_avg"], trained.optimizer.state_dict()["state"][k]["exp_avg"])
                           for k in moments)
    assert fresh.plateau.scale == 0.5 and fresh.plateau.bad_epochs == 2
    assert (fresh.early_stop.best_epoch, fresh.early_stop.best_loss) == (1, 0.7) and fresh.early_stop.best_weights
    assert fresh.best_val_accuracy == 0.8 and fresh.ema.steps == trained.ema.steps
    for a, b in zip(trained.ema.module.state_dict().values(), fresh.ema.module.state_dict().values()):
        assert torch.equal(a, b)
