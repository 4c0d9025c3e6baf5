"""A NaN or infinite training loss: a clear event and the configured reaction, never NaN weights.

The real-process tests start the digits MLP from weights poisoned so that one hidden
unit overflows to infinity whenever a rarely used pixel (about 0.4 % of the images)
is lit: those batches, and only those, have a non-finite loss.
"""

import json
import math
import os
import subprocess
import sys

import torch

from tiller.store import Store
from tests.test_live_steering import ROOT
from tiller.trainer.engine.checkpoint import load_checkpoint, save_checkpoint, training_payload
from tiller.trainer.steering.config import validate_config
from tiller.trainer.engine.epoch import train_one_epoch
from tiller.trainer.steering.live_config import live_config_path, parse_live_file
from tiller.trainer.engine.nonfinite import MAX_IN_A_ROW, RECUT_AFTER, NonfiniteGuard
from tiller.trainer.engine.state import build_state

RARE_PIXEL = 8  # lit in 7 of the 1,797 digits
HUGE = 3e38  # finite in float32; two of them multiplied are not


def poison(model, pixel: int = RARE_PIXEL, always: bool = False) -> None:
    """Unit 0 of the hidden layer sees only ``pixel`` (or, ``always``, a constant) and feeds every logit hugely."""
    with torch.no_grad():
        model.hidden.weight[0].zero_()
        model.hidden.bias[0] = 1.0 if always else 0.0
        model.hidden.weight[0, pixel] = 0.0 if always else HUGE
        model.output.weight[:, 0] = HUGE


def poisoned_weights(path, **kwargs):
    state = build_state(validate_config({"model_name": "mlp"}))
    poison(state.model, **kwargs)
    save_checkpoint(path, training_payload(state, 0))  # a Tiller checkpoint: use_pretrained reads it
    return path


def train_from(weights, runs_dir, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "tiller", "train", "--runs-dir", str(runs_dir), "--set", 'model_name="mlp"',
               "--set", "use_pretrained=true", "--set", f'pretrained_path="{weights}"', "--set", "batch_size=32",
               "--set", "lr_scheduler=\"none\""]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def all_finite(state_dict) -> bool:
    return all(torch.isfinite(t).all() for t in state_dict.values() if t.is_floating_point())


def test_skip_takes_no_step_lowers_the_lr_once_an_epoch_and_keeps_every_weight_finite(tmp_path):
    runs_dir = tmp_path / "runs"
    done = train_from(poisoned_weights(tmp_path / "poisoned.pt"), runs_dir, "num_epochs=2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "non-finite loss at epoch 1, batch" in done.stdout

    store = Store(runs_dir)
    run_id = store.runs()["id"].iloc[0]
    assert store.run(run_id)["status"] == "finished"
    versions = store.config_versions(run_id)
    by_trainer = versions[versions["source"] == "trainer"]
    assert by_trainer["epoch"].tolist() == [1, 2]  # one cut per epoch: the poisoned batches are not in a row
    assert [c["learning_rate"] for c in by_trainer["config"]] == [0.0005, 0.00025]
    assert all("nonfinite_loss is skip" in reason for reason in by_trainer["reason"])
    # The live file shows the lowered rate, so an edit saved from it does not take it back.
    assert parse_live_file(live_config_path(runs_dir, run_id).read_text()).values["learning_rate"] == 0.00025

    events = store.events(run_id)
    warnings = events[events["level"] == "warning"]["message"].tolist()
    assert any(m.startswith("Non-finite training loss (") and "the step was not taken" in m for m in warnings)
    assert any(m.startswith("Epoch 1: ") and "took no step" in m for m in warnings)
    train_loss = store.metrics([run_id], names=["loss"], splits=["train"])["value"]
    assert len(train_loss) == 2 and all(math.isfinite(v) for v in train_loss)  # the good batches' mean
    assert all_finite(load_checkpoint(runs_dir / run_id / "checkpoints" / "last.pt")["model"])
    state = json.loads((runs_dir / run_id / "state.json").read_text())
    skipped_in_epoch_2 = state["last_epoch"]["nonfinite_batches"]
    assert 0 < skipped_in_epoch_2 < state["nonfinite_loss"]["skipped_steps"]  # the total counts epoch 1 too
    assert state["nonfinite_loss"]["lr_cuts"] == 2


def test_stop_ends_the_run_failed_at_the_first_non_finite_loss_with_a_clear_message(tmp_path):
    runs_dir = tmp_path / "runs"
    done = train_from(poisoned_weights(tmp_path / "poisoned.pt"), runs_dir, "num_epochs=2",
                      'nonfinite_loss="stop"')
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    run_id = Store(runs_dir).runs()["id"].iloc[0]
    assert done.stderr.startswith("tiller: the training loss was ")
    assert "at epoch 1, batch " in done.stderr and "nonfinite_loss is stop" in done.stderr
    assert f"tiller resume {run_id}" in done.stderr

    store = Store(runs_dir)
    assert store.run(run_id)["status"] == "failed"
    errors = store.events(run_id).query("level == 'error'")["message"].tolist()
    assert any(m.startswith("Run failed: NonfiniteLoss: the training loss was") for m in errors), errors
    assert store.metrics([run_id]).empty  # epoch 1 never finished: nothing half-done was logged


def test_an_epoch_of_training_never_applies_a_non_finite_loss():
    state = build_state(validate_config({"model_name": "mlp", "batch_size": 32}))
    poison(state.model)
    seen = []
    metrics, observed = train_one_epoch(state, 1, lambda index: None, lambda index, value: seen.append(value))
    assert seen and all(not math.isfinite(v) for v in seen)
    assert observed.nonfinite_batches == len(seen)
    assert observed.optimizer_steps == observed.batches > 0  # every finite batch stepped, no other did
    assert all_finite(state.model.state_dict()) and all(math.isfinite(v) for v in metrics.values())


def test_the_guard_cuts_once_an_epoch_again_after_a_streak_and_stops_a_long_one():
    skip = validate_config({"nonfinite_loss": "skip"})
    guard = NonfiniteGuard()
    guard.start_epoch()
    assert guard.verdict(skip) == "cut"
    guard.finite()
    assert guard.verdict(skip) == "skip"  # already cut this epoch
    guard.finite()
    verdicts = [guard.verdict(skip) for _ in range(MAX_IN_A_ROW)]
    assert verdicts[RECUT_AFTER - 1] == "cut" and verdicts.count("cut") == (MAX_IN_A_ROW - 1) // RECUT_AFTER
    assert verdicts[-1] == "stop" and "stop" not in verdicts[:-1]
    guard.start_epoch()
    guard.finite()
    assert guard.verdict(skip) == "cut"  # a new epoch cuts again at its first
    assert NonfiniteGuard().verdict(validate_config({"nonfinite_loss": "stop"})) == "stop"
    assert guard.describe(skip)["skipped_steps"] == 2 + MAX_IN_A_ROW + 1


def test_a_loss_that_is_never_finite_stops_the_run_even_when_skipping(tmp_path):
    runs_dir = tmp_path / "runs"
    done = train_from(poisoned_weights(tmp_path / "broken.pt", always=True), runs_dir, "num_epochs=1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{MAX_IN_A_ROW} in a row" in done.stderr and "weights or the data are broken" in done.stderr
