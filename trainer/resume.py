"""``tiller resume RUN``: go on training a run whose process ended before the run did.

A run that crashed (killed, machine rebooted), failed (an error, a full disk)
or was stopped on request continues in this process from its last checkpoint:

- the config is the run's latest version, so every change applied before the
  crash stays in force, and the config history goes on from there;
- epochs continue from the checkpoint's: an epoch the crash cut short is
  trained again, and its rows (if it had logged any) are replaced;
- an edit saved in the live file but not applied yet is applied at the first
  epoch boundary, like any edit; a pause or stop request left in it is cleared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from store import LIVE_STATUSES, Store
from store.paths import run_dir_for
from trainer.checkpoint import checkpoint_path, load_checkpoint, restore_training
from trainer.config import ConfigError, validate_config
from trainer.live_config import request_control
from trainer.loop import run_epochs
from trainer.progress import LineReporter, ProgressReporter
from trainer.state import TrainingState, build_state

RESUMABLE = ("crashed", "failed", "stopped")


class CannotResume(ValueError):
    """The run cannot be continued (still running, finished, or its data changed); says why."""


def check_resumable(record: dict) -> None:
    status = record["status"]
    if status in LIVE_STATUSES:
        raise CannotResume(f"run {record['id']} is still {status} (pid {record['pid']} on {record['host']}, "
                           "heartbeat fresh); it needs no resume")
    if status == "finished":
        raise CannotResume(f"run {record['id']} finished; nothing is left to train")
    if status not in RESUMABLE:
        raise CannotResume(f"run {record['id']} is {status}; only {', '.join(RESUMABLE)} runs can be resumed")


def resume(store: Store, run_id: str, *, say: Callable[[str], None] = print,
           progress: ProgressReporter | None = None) -> str:
    """Continue ``run_id`` from its last checkpoint in this process; returns the run id.

    What it has to say goes to ``progress`` if given, else line by line to ``say``.
    """
    progress = progress or LineReporter(say)
    record = store.run(run_id)
    check_resumable(record)
    try:
        config = validate_config(store.current_config(run_id))
    except ConfigError as exc:  # a config written by an older Tiller that this one no longer accepts
        raise CannotResume("its latest config is not valid any more: " + "; ".join(exc.problems)) from None
    state = build_state(config)
    check_same_data(store, run_id, state)
    first_epoch, notes = restore_from_checkpoint(state, checkpoint_path(run_dir_for(store.runs_dir, run_id), "last"))
    if first_epoch > config.num_epochs:
        raise CannotResume(f"run {run_id} has trained all {config.num_epochs} epochs; nothing is left to train")
    with store.reopen_run(run_id) as run:
        was = record["status"]
        where = (f"the checkpoint of epoch {first_epoch - 1}" if first_epoch > 1
                 else "the start (no epoch was checkpointed)")
        run.event("info", f"Resumed ({was} before) from {where}, on {state.device}; epochs {first_epoch}–"
                  f"{config.num_epochs} follow." + "".join(f" Note: {note}." for note in notes), first_epoch)
        progress.say(f"run {run_id} resumed at epoch {first_epoch}/{config.num_epochs} (steer it by editing "
            f"{run.dir / 'config.json'})")
        fallback = config.model_dump()
        run_epochs(state, run, progress, first_epoch,
                   before_first=lambda path: request_control(path, "run", fallback=fallback))
    return run_id


def restore_from_checkpoint(state: TrainingState, path: Path) -> tuple[int, list[str]]:
    """The first epoch to train, and notes; a run never checkpointed starts at epoch 1."""
    if not path.exists():
        return 1, []
    try:
        payload = load_checkpoint(path)
    except Exception as exc:  # truncated by a full disk, or not a checkpoint at all
        raise CannotResume(f"its last checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        notes = restore_training(state, payload)
    except (RuntimeError, KeyError, ValueError) as exc:  # the model or optimizer no longer matches
        raise CannotResume(f"its last checkpoint {path} does not fit the model built from its config: {exc}") from None
    return int(payload["epoch"]) + 1, notes


def check_same_data(store: Store, run_id: str, state: TrainingState) -> None:
    """Refuse to go on when the validation set is not the one the run was scored on."""
    recorded = store.val_sample_ids(run_id)
    if recorded is not None and recorded != state.data.val_ids:
        raise CannotResume("the data set changed since the run started (its validation samples differ), "
                           "so its metrics would not be comparable; start a new run instead")

