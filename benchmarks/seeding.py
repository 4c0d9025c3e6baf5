"""The runs the page benchmarks read, written through the public ``store.Store`` API.

Each workload mimics a writer Tiller really has:

- ``seed_step_runs``: a user's own loop logging four metrics per *step* (the Compare page's
  stress case: thousands of points per run);
- ``seed_many_runs``: a long-used runs folder, mostly ended runs of the built-in trainer
  (the Runs page);
- ``seed_live_run``: one run in the middle of training, with what ``trainer/engine/loop.py``
  writes per epoch (eight metrics, predictions, checkpoints, ``state.json``) and per
  config change (a version, an event, a report), plus advice asked of the offline rules;
- ``seed_eval_run``: a finished run with large validation predictions (the Evaluation page).

Everything is seeded from fixed random seeds, so two runs of a benchmark read the same data.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from tiller.store import Store
from tiller.trainer.advisor.report import write_change_report  # the trainer's own writers, so the rows are real
from tiller.trainer.advisor.service import ask
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import STATE_FILENAME, live_config_path, render_live_file, write_atomic

# What the trainer logs after each epoch (trainer/engine/epoch.py and trainer/engine/loop.py).
TRAINER_METRICS = ("train/loss", "train/accuracy", "train/grad_norm", "samples_per_sec",
                   "val/loss", "val/accuracy", "epoch_seconds", "lr")
ENDED_STATUSES = ("finished", "finished", "finished", "stopped", "failed")  # most runs end well
STALE_HEARTBEAT_S = 3_600.0  # a "running" run this silent is shown as crashed


# ------------------------------------------------------------ shared pieces


def trainer_metrics(epoch: int, lr: float, rng: np.random.Generator) -> dict[str, float]:
    """One epoch's metrics as the trainer logs them, for a run that learns then levels off."""
    loss = 2.3 / math.sqrt(epoch) * (1 + 0.1 * rng.uniform(-1, 1))
    return {
        "train/loss": loss, "train/accuracy": 1 - min(loss, 1) / 2, "train/grad_norm": 3 * loss,
        "samples_per_sec": 4_000 * (1 + 0.05 * rng.uniform(-1, 1)),
        "val/loss": loss * 1.1, "val/accuracy": 1 - min(loss, 1) / 1.8,
        "epoch_seconds": 2.0 * (1 + 0.05 * rng.uniform(-1, 1)), "lr": lr,
    }


def class_probabilities(labels: np.ndarray, classes: int, skill: float, rng: np.random.Generator) -> np.ndarray:
    """Softmax of noise plus ``skill`` on the true class: accuracy grows with skill, as over epochs."""
    logits = rng.normal(size=(len(labels), classes))
    logits[np.arange(len(labels)), labels] += skill
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def record_val_samples(store: Store, run_id: str, samples: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    labels = rng.integers(0, classes, samples)
    store.record_val_samples(run_id, labels=labels, sample_ids=[f"synthetic#{i}" for i in range(samples)],
                             class_names=[f"class {c}" for c in range(classes)],
                             train_counts=[4 * samples // classes] * classes)
    return labels


# ----------------------------------------------------------- Compare page


def seed_step_runs(store: Store, runs: int, steps: int) -> list[str]:
    """``runs`` runs of a user's own loop, ``steps`` steps x 4 metrics each; every fourth run
    lowers its learning rate half way. The configs differ in three settings."""
    run_ids = []
    for index in range(runs):
        run_id = f"loop_20260101_{index:06d}"
        config = {"learning_rate": 10 ** -(2 + index % 3), "batch_size": 32 * (1 + index % 2),
                  "optimizer": ["Adam", "SGD"][index % 2 == 1], "seed": 42}
        store.create_run(model="custom", dataset="own", name=f"trial {index}", run_id=run_id)
        store.add_config_version(run_id, config, source="cli", epoch=1)
        noise = np.random.default_rng(index).uniform(-1, 1, steps)
        for step in range(1, steps + 1):
            if index % 4 == 0 and step == steps // 2:
                config = {**config, "learning_rate": config["learning_rate"] / 10}
                store.add_config_version(run_id, config, source="user", reason="plateau", epoch=step)
            loss = (1 + index / runs) / math.sqrt(step) * (1 + 0.3 * noise[step - 1])
            store.log_metrics(run_id, step, {"train/loss": loss, "val/loss": loss * 1.1,
                                             "train/accuracy": 1 - min(loss, 1) / 2,
                                             "val/accuracy": 1 - min(loss, 1) / 1.8})
        store.update_run(run_id, status="finished")
        run_ids.append(run_id)
    return run_ids


# --------------------------------------------------------------- Runs page


def seed_many_runs(store: Store, count: int, mean_epochs: int) -> list[str]:
    """``count`` trainer runs of about ``mean_epochs`` epochs (8 metrics each), newest first in the
    returned list. One in fifty still trains, one in fifty has lost its process (crashed); the rest
    ended: finished, stopped or failed."""
    rng = np.random.default_rng(1)
    run_ids = []
    for index in range(count):
        epochs = max(1, mean_epochs // 2 + index % (mean_epochs + 1))
        lr = float(10 ** -rng.uniform(2, 4))
        config = TrainConfig(num_epochs=epochs + 10, learning_rate=lr, seed=index).model_dump()
        run_id = store.create_run(model="mlp", dataset="digits", name=f"sweep {index}",
                                  run_id=f"mlp_20260101_{index:06d}")
        store.add_config_version(run_id, config, source="cli", reason="initial config", epoch=1)
        store.add_event(run_id, "info", "Started mlp on digits: 1437 training and 360 validation samples.")
        for epoch in range(1, epochs + 1):
            store.log_metrics(run_id, epoch, trainer_metrics(epoch, lr, rng))
        _end_run(store, run_id, index)
        run_ids.append(run_id)
    return run_ids[::-1]


def _end_run(store: Store, run_id: str, index: int) -> None:
    if index % 50 == 49:
        return  # still training, with a fresh heartbeat
    if index % 50 == 48:
        store.update_run(run_id, heartbeat=time.time() - STALE_HEARTBEAT_S)  # its process died
        return
    status = ENDED_STATUSES[index % len(ENDED_STATUSES)]
    store.update_run(run_id, status=status, error="Traceback ...\nRuntimeError: out of memory"
                     if status == "failed" else None)


# ---------------------------------------------------------------- Run page


def seed_live_run(store: Store, epochs: int, *, samples: int = 2_000, classes: int = 10,
                  change_every: int = 50, advice_every: int = 100) -> str:
    """A run ``epochs`` epochs into training, still running, as ``trainer/engine/loop.py`` leaves it.

    Per epoch: the eight metrics, the validation predictions, the last (and when better, the
    best) checkpoint record. Every ``change_every`` epochs a user lowers the learning rate:
    a config version, its event and its report. Every ``advice_every`` epochs someone asks
    the offline rules for advice. Plus the live config file, ``state.json``, and the odd
    plateau, pause and rejected-edit event.
    """
    rng = np.random.default_rng(2)
    config = TrainConfig(num_epochs=epochs + 200, lr_scheduler="ReduceLROnPlateau").model_dump()
    run_id = store.create_run(model="resnet18", dataset="digits", name="live resnet18", run_id="resnet18_20260101_000000")
    run_dir = store.runs_dir / run_id
    write_atomic(live_config_path(store.runs_dir, run_id), render_live_file(config))
    store.add_config_version(run_id, config, source="cli", reason="initial config", epoch=1)
    store.add_event(run_id, "info", f"Started resnet18 on digits: {4 * samples} training and {samples} "
                    f"validation samples, {classes} classes, on cpu. All parameters train; float32.")
    labels = record_val_samples(store, run_id, samples, classes, rng)
    best = -1.0
    for epoch in range(1, epochs + 1):
        if epoch > 1 and epoch % change_every == 1:
            config = _apply_user_change(store, run_id, run_dir, config, epoch)
        _log_occasional_events(store, run_id, epoch)
        metrics = trainer_metrics(epoch, config["learning_rate"], rng)
        store.log_metrics(run_id, epoch, metrics)
        store.record_predictions(run_id, epoch, class_probabilities(labels, classes, 1.0 + epoch / 20, rng))
        store.record_checkpoint(run_id, kind="last", epoch=epoch, path=run_dir / "checkpoints" / "last.pt",
                                metric="val/accuracy", value=metrics["val/accuracy"])
        if metrics["val/accuracy"] > best:
            best = metrics["val/accuracy"]
            store.record_checkpoint(run_id, kind="best", epoch=epoch, path=run_dir / "checkpoints" / "best.pt",
                                    metric="val/accuracy", value=best)
        if epoch % advice_every == 0:
            ask(store, run_id, "why is the validation loss flat?", offline=True, asked_by="user")
    _write_state(run_dir, epochs, config)
    store.beat(run_id)
    return run_id


def _apply_user_change(store: Store, run_id: str, run_dir: Path, config: dict, epoch: int) -> dict:
    """What the trainer records when it applies an edit at an epoch boundary."""
    new = {**config, "learning_rate": config["learning_rate"] / 2}
    version = store.add_config_version(run_id, new, source="user", reason="loss has plateaued", epoch=epoch)
    store.add_event(run_id, "info", f"Config v{version} from user applied at epoch {epoch}: learning_rate "
                    f"{config['learning_rate']!r} → {new['learning_rate']!r} (loss has plateaued). "
                    "learning rate set on 1 param group", epoch)
    write_change_report(store, run_id, version, run_dir)
    write_atomic(live_config_path(store.runs_dir, run_id), render_live_file(new))
    return new


def _log_occasional_events(store: Store, run_id: str, epoch: int) -> None:
    if epoch % 25 == 0:
        store.add_event(run_id, "info", "ReduceLROnPlateau: no better validation loss for more than 3 epochs; "
                        "the lr is now 0.5 x learning_rate.", epoch)
    if epoch % 70 == 0:
        store.add_event(run_id, "info", f"Paused in epoch {epoch} before step 12.", epoch)
        store.add_event(run_id, "info", f"Resumed in epoch {epoch}.", epoch)
    if epoch % 120 == 0:
        store.add_event(run_id, "error", f"Rejected config edit before epoch {epoch}: learning_rate: input should "
                        "be greater than 0. Training goes on with the last good config.", epoch)


def _write_state(run_dir: Path, epoch: int, config: dict) -> None:
    """``state.json`` in the shape ``tiller.trainer.engine.introspect.effective_settings`` writes it."""
    lr = config["learning_rate"]
    state = {
        "epoch": epoch, "num_epochs": config["num_epochs"], "batch_size": config["batch_size"],
        "optimizer": {"class": "Adam", "lr": lr, "weight_decay": 0.0, "betas": [0.9, 0.999], "params": 62},
        "last_epoch": {
            "batches": 250, "optimizer_steps": 250, "largest_batch": 32, "sampler": "shuffled",
            "augmented_batches": 0, "mixed_batches": {}, "compute_dtype": "float32", "label_smoothing": 0.0,
            "class_weights": None, "clip_limit": None, "max_grad_norm": 1.7, "max_grad_norm_after_clip": 0.0,
            "mix_strength": 0.0, "last_lr": lr,
        },
        "imbalance": "no class weighting", "dropout": [0.2], "trainable_params": 11_181_642,
        "total_params": 11_181_642, "freeze": "all 11,181,642 parameters train",
        "precision": {"in_force": "float32", "autocast_dtype": None, "scaler": None, "loss_scaling_enabled": True,
                      "loss_scale": "dynamic", "static_loss_scale": 128.0},
        "ema": {"active": False}, "plateau": {"scale": 1.0, "bad_epochs": 0},
        "early_stopping": {"enabled": False, "patience": 10, "best_epoch": epoch},
        "autopilot": {"enabled": False, "every": 5, "max_changes": 10, "max_lr_factor": 10.0, "advisor": "auto",
                      "steps": 0, "changes_made": 0, "in_flight": False, "last": ""},
    }
    write_atomic(run_dir / STATE_FILENAME, json.dumps(state, indent=2) + "\n")


# --------------------------------------------------------- Evaluation page


def seed_eval_run(store: Store, samples: int, classes: int, epochs: int, run_id: str = "bench_eval") -> str:
    """A finished run with ``epochs`` epochs of predictions on ``samples`` validation samples."""
    rng = np.random.default_rng(0)
    store.create_run(model="mlp", dataset="synthetic", name="evaluation benchmark", run_id=run_id)
    labels = record_val_samples(store, run_id, samples, classes, rng)
    for epoch in range(1, epochs + 1):
        probs = class_probabilities(labels, classes, skill=1.0 + epoch, rng=rng)
        store.record_predictions(run_id, epoch, probs)
        store.log_metrics(run_id, epoch, {"val/accuracy": float(np.mean(probs.argmax(axis=1) == labels))})
    store.update_run(run_id, status="finished")
    return run_id
