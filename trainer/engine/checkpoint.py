"""Checkpoints: written so that no reader ever sees half a file, and complete
enough that ``tiller resume`` goes on as if the process had never stopped.

A checkpoint holds the weights (and the EMA average the validation scored),
the optimizer's moments, the loss scaler, the random generators, and the
small memories the loop keeps between epochs: ReduceLROnPlateau's, early
stopping's, the autopilot's budget and the best accuracy so far.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """Where a run keeps its ``last`` or ``best`` checkpoint."""
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only folder); the previous one is intact."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)  # a half-written temp file would only fill the disk further
        raise CheckpointWriteError(exc.errno, f"cannot write the checkpoint {path}: {exc.strerror or exc}") from exc


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def training_payload(state, epoch: int, *, autopilot_log=None, **extra) -> dict[str, Any]:
    """Everything needed to go on training ``state`` after ``epoch`` (see ``restore_training``)."""
    payload = {
        "epoch": epoch,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "config": state.config.model_dump(),
        "class_names": state.data.class_names,
        "best_val_accuracy": state.best_val_accuracy,
        "plateau": asdict(state.plateau),
        "early_stop": {"best_loss": state.early_stop.best_loss, "best_epoch": state.early_stop.best_epoch},
        "rng": {"torch": torch.get_rng_state(), "augment": state.augment_rng.get_state()},
        **extra,
    }
    if state.ema.active:
        payload["ema_model"] = state.ema.module.state_dict()
        payload["ema_steps"] = state.ema.steps
    if state.config.early_stopping and state.early_stop.best_weights:
        # Only when it may be used: restoring the best weights at the stop needs them.
        payload["early_stop_weights"] = state.early_stop.best_weights
    if state.precision.scaler is not None:
        payload["scaler"] = state.precision.scaler.state_dict()
    if autopilot_log is not None:
        payload["autopilot"] = asdict(autopilot_log)
    return payload


def restore_training(state, payload: dict[str, Any]) -> list[str]:
    """Put a checkpoint's training state into a freshly built ``state``; returns notes on what could not be.

    ``state`` is built from the run's config in force now, which may differ from
    the checkpoint's when an edit was applied after it was saved: an optimizer
    switched since then starts fresh, as the switch itself would have.
    """
    notes = []
    state.model.load_state_dict(payload["model"])
    if payload["config"].get("optimizer") == state.config.optimizer:
        state.optimizer.load_state_dict(payload["optimizer"])
    else:
        notes.append(f"the optimizer was switched to {state.config.optimizer} after the checkpoint; it starts fresh")
    if state.ema.active:
        if "ema_model" in payload:
            state.ema.module.load_state_dict(payload["ema_model"])
            state.ema.steps = payload.get("ema_steps", 0)
        else:
            notes.append("model EMA was turned on after the checkpoint; the average starts from its weights")
    state.best_val_accuracy = payload.get("best_val_accuracy", state.best_val_accuracy)
    for key, value in payload.get("plateau", {}).items():
        setattr(state.plateau, key, value)
    stop = payload.get("early_stop", {})
    state.early_stop.best_loss = stop.get("best_loss", state.early_stop.best_loss)
    state.early_stop.best_epoch = stop.get("best_epoch", state.early_stop.best_epoch)
    state.early_stop.best_weights = payload.get("early_stop_weights", {})
    if "scaler" in payload and state.precision.scaler is not None:
        state.precision.scaler.load_state_dict(payload["scaler"])
    rng = payload.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "augment" in rng:
        state.augment_rng.set_state(rng["augment"])
    return notes
