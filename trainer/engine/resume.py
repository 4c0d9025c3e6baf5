"""``tiller resume RUN``: go on training a run whose process ended before the run did.

A run that crashed (killed, machine rebooted), failed (an error, a full disk)
or was stopped on request continues in this process from its last checkpoint:

- the config is the run's latest version, so every change applied before the
  crash stays in force, and the config history goes on from there;
- epochs continue from the checkpoint's: an epoch the crash cut short is
  trained again, and its rows (if it had logged any) are replaced;
- an edit saved in the live file but not applied yet is applied at the first
  epoch boundary, like any edit; a pause or stop request left in it is cleared.

It refuses, saying why and what to do instead, a run another live process holds
(a trainer stopped with SIGSTOP looks crashed but still holds it; so does a second
``tiller resume`` started at the same time), a run of a user's own training loop
(only their script has its model and data), and a checkpoint ahead of the database's
metrics (a database restored from an older backup: resuming would leave a gap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tiller.store import LIVE_STATUSES, Store
from tiller.store.ownership import Ownership, RunOwned
from tiller.store.paths import run_dir_for
from tiller.store.store import BUILT_IN
from tiller.trainer.engine.checkpoint import checkpoint_path, load_checkpoint, restore_training
from tiller.trainer.steering.config import ConfigError, validate_config
from tiller.trainer.steering.live_config import request_control
from tiller.trainer.engine.loop import run_epochs
from tiller.trainer.engine.progress import LineReporter, ProgressReporter
from tiller.trainer.engine.state import TrainingState, build_state

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
    if record.get("trainer") != BUILT_IN:
        raise CannotResume(own_loop_refusal(record["id"]))


def own_loop_refusal(run_id: str) -> str:
    return (f"run {run_id} was trained by a training loop of your own (tiller.run, or the store's API in your "
            "script), not by tiller train, so tiller resume has neither its model nor its data; its metrics are "
            "left as they are. Run your script again instead: it starts a new run (tiller.run cannot take up an "
            "existing run).")


def resume(store: Store, run_id: str, *, say: Callable[[str], None] = print,
           progress: ProgressReporter | None = None) -> str:
    """Continue ``run_id`` from its last checkpoint in this process; returns the run id.

    What it has to say goes to ``progress`` if given, else line by line to ``say``.
    """
    progress = progress or LineReporter(say)
    # The run is this process's before anything is read: a second resume started at the same
    # time is refused here, and one that waited finds the run as the first one left it.
    with claim(store, run_id) as ownership:
        resume_owned(store, run_id, ownership, progress)
    return run_id


def claim(store: Store, run_id: str) -> Ownership:
    try:
        return store.claim_run(run_id)
    except RunOwned as exc:
        raise CannotResume(str(exc)) from None


def resume_owned(store: Store, run_id: str, ownership: Ownership, progress: ProgressReporter) -> None:
    record = store.run(run_id)
    check_resumable(record)
    try:
        config = validate_config(store.current_config(run_id))
    except ConfigError as exc:  # a config written by an older Tiller that this one no longer accepts
        raise CannotResume("its latest config is not valid any more: " + "; ".join(exc.problems)) from None
    state = build_state(config)
    check_same_data(store, run_id, state)
    last = checkpoint_path(run_dir_for(store.runs_dir, run_id), "last")
    first_epoch, notes = restore_from_checkpoint(state, last)
    check_metrics_reach(record, first_epoch - 1, last, store.db_path)
    if first_epoch > config.num_epochs:
        raise CannotResume(f"run {run_id} has trained all {config.num_epochs} epochs; nothing is left to train")
    with store.reopen_run(run_id, ownership) as run:
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


def check_metrics_reach(record: dict, checkpointed_epoch: int, path: Path, db_path: Path) -> None:
    """Refuse a checkpoint ahead of the run's metrics: the database is older than it (a restored backup).

    A crash leaves the metrics level with the checkpoint or one epoch ahead (they are
    committed before it is written), never behind; resuming past them would leave
    epochs without metrics for good.
    """
    logged = record.get("epoch")
    logged = 0 if logged is None or logged != logged else int(logged)  # no metrics: None, or NaN from pandas
    if checkpointed_epoch <= logged:
        return
    has = f"metrics only up to epoch {logged}" if logged else "no metrics at all"
    missing = f"epoch {checkpointed_epoch}" if checkpointed_epoch == logged + 1 else \
        f"epochs {logged + 1}–{checkpointed_epoch}"
    raise CannotResume(
        f"its last checkpoint ({path}) holds epoch {checkpointed_epoch}, but the database has {has} for this "
        f"run: the database is older than the checkpoint (restored from a backup?). Resuming would leave "
        f"{missing} without metrics for good, so nothing was changed. Put back the database that goes with the "
        f"checkpoint ({db_path}, with its -wal file beside it), or start a new run with tiller train.")


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

