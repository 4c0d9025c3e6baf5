"""The training loop: one epoch at a time, steerable between epochs.

Order of one epoch, top to bottom:
  1. take the pending edit of the live config (validate, apply, record)
  2. train, checking pause/stop at every step boundary
  3. evaluate on the validation split
  4. log metrics, save last (and best) checkpoint
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from store import Run, Store, StoreWriteError
from trainer.advisor.autopilot import Autopilot
from trainer.advisor.report import write_change_report
from trainer.appliers import apply_change
from trainer.checkpoint import CheckpointWriteError, checkpoint_path, save_checkpoint, training_payload
from trainer.config import ConfigError, TrainConfig
from trainer.data import class_counts
from trainer.epoch import EpochObservations, train_one_epoch, validate
from trainer.introspect import effective_settings, write_state
from trainer.live_config import (
    CONFIG_FILENAME,
    ChangeNote,
    LiveFile,
    keep_rejected,
    read_live_bytes,
    render_live_file,
    rewrite_values,
    write_atomic,
)
from trainer.nonfinite import NonfiniteLoss, stop_message
from trainer.review import AcceptedChange, decode_edit, review_edit
from trainer.state import TrainingState, build_state  # noqa: F401  (build_state re-exported for tests)
from trainer.watcher import ConfigWatcher

# A paused run wakes on the file's change notification; this is the fallback poll
# for file systems that send none.
PAUSE_POLL_S = 0.2
# How long an epoch boundary waits for an autopilot step still asking its
# advisor: the offline rules answer well within it, so their changes land at
# the very next epoch; a slow Claude reply lands at a later boundary instead
# of holding up training.
AUTOPILOT_SETTLE_S = 2.0


class StopRequested(Exception):
    """The live config asked the run to stop."""


class TrainingHalted(RuntimeError):
    """Training stopped because its records could not be written; everything written before is intact."""


def train(
    config: TrainConfig,
    store: Store,
    *,
    name: str | None = None,
    source: str = "cli",
    reason: str = "",
    say: Callable[[str], None] = print,
) -> str:
    """Train ``config`` as a new run in ``store``; returns the run id."""
    state = build_state(config)
    with store.start_run(model=config.model_name, dataset=dataset_label(config), name=name) as run:
        config_path = run.dir / CONFIG_FILENAME
        write_atomic(config_path, render_live_file(config.model_dump()))
        run.config_version(config.model_dump(), source=source, reason=reason or "initial config", epoch=1)
        announce_start(run, state)
        say(f"run {run.id}  (steer it by editing {config_path})")
        run_epochs(state, run, say)
    return run.id


def run_epochs(state: TrainingState, run: Run, say: Callable[[str], None], first_epoch: int = 1,
               before_first: Callable[[Path], None] | None = None) -> None:
    """Train ``run`` from ``first_epoch`` to its end, steered through its live config file.

    ``before_first(config_path)`` runs once the file is watched, so what it writes
    there is taken at the first epoch boundary. A database or disk that takes no
    more writes stops training with ``TrainingHalted``, which says how to go on.
    """
    config_path = run.dir / CONFIG_FILENAME
    with ConfigWatcher(config_path) as watcher:
        if before_first is not None:
            before_first(config_path)
        loop = EpochLoop(state, run, watcher, config_path, say)
        try:
            loop.run_to_end(first_epoch)
        except (StoreWriteError, CheckpointWriteError) as exc:
            raise TrainingHalted(halted_message(exc, run, loop.checkpointed_epoch)) from exc


def halted_message(exc: Exception, run: Run, checkpointed_epoch: int) -> str:
    kept = (f"checkpoints/last.pt holds epoch {checkpointed_epoch}" if checkpointed_epoch
            else "no epoch was checkpointed yet, so it starts again from epoch 1")
    return (f"training stopped: {exc}\n"
            f"  Everything written before is kept: the metrics and config history in the database, and {kept} "
            f"(in {run.dir}).\n"
            f"  Free some disk space (or make the runs folder writable again), then go on with: "
            f"tiller resume {run.id}")


def dataset_label(config: TrainConfig) -> str:
    if config.data_dir:
        return Path(config.data_dir.replace("\\", "/")).name or config.data_dir
    return "digits" if config.dataset == "auto" else config.dataset


def announce_start(run: Run, state: TrainingState) -> None:
    """The start event, the notes of building the model and data, and the validation samples."""
    data = state.data
    run.event("info", f"Started {state.config.model_name} on {data.source}: {len(data.train)} training and "
              f"{len(data.val)} validation samples, {data.num_classes} classes, on {state.device}. "
              f"{state.freeze.describe()}; {state.precision.describe()}.")
    for note in state.model.build_notes + state.imbalance.notes:
        run.event("info", note)
    if data.skipped:
        shown = "; ".join(data.skipped[:10]) + (f"; and {len(data.skipped) - 10} more" if len(data.skipped) > 10 else "")
        run.event("warning", f"{len(data.skipped)} item(s) of the data set could not be read as they are "
                  f"(each says whether it was skipped or kept): {shown}.")
    run.val_samples(labels=data.val_labels.numpy(), sample_ids=data.val_ids, class_names=data.class_names,
                    task="binary" if state.model.binary else "multiclass",
                    train_counts=class_counts(data.train_labels, data.num_classes))


class EpochLoop:
    def __init__(self, state: TrainingState, run: Run, watcher: ConfigWatcher, config_path: Path, say):
        self.state, self.run, self.watcher, self.config_path, self.say = state, run, watcher, config_path, say
        self.observations = EpochObservations()
        self.last_probs = None
        self.autopilot = Autopilot(run.store.runs_dir, run.id, run.event)
        self.checkpointed_epoch = 0  # the epoch checkpoints/last.pt holds

    def run_to_end(self, first_epoch: int = 1) -> None:
        epoch = first_epoch
        self.checkpointed_epoch = first_epoch - 1
        while True:
            self.autopilot.settle(AUTOPILOT_SETTLE_S)
            self.take_pending_edit(epoch)
            if epoch > self.state.config.num_epochs:
                break
            started, self.state.paused_seconds = time.perf_counter(), 0.0
            self.state.nonfinite.start_epoch()
            try:
                metrics = self.train_epoch(epoch)
            except StopRequested:
                self.run.mark_stopped()
                self.run.event("warning", f"Stopped during epoch {epoch} on request; the last "
                                f"checkpoint is from epoch {epoch - 1}.", epoch)
                self.say(f"stopped during epoch {epoch}")
                return
            self.report_skipped_steps(epoch)
            metrics.update(self.evaluate())
            self.observe_plateau(epoch, metrics["val/loss"])
            self.state.early_stop.observe(epoch, metrics["val/loss"], self.state.evaluated_model)
            metrics["epoch_seconds"] = time.perf_counter() - started - self.state.paused_seconds
            metrics["lr"] = self.state.optimizer.param_groups[0]["lr"]
            self.run.log(epoch, metrics)
            self.run.flush()  # the epoch is durable before anything reports it done
            self.run.predictions(epoch, self.last_probs.numpy())
            self.autopilot.after_epoch(epoch, self.state.config)
            self.write_state(epoch)
            self.save_checkpoints(epoch, metrics)
            self.say(format_epoch(epoch, self.state.config.num_epochs, metrics))
            epoch += 1
            if self.state.early_stop.should_stop(epoch - 1, self.state.config):
                self.stop_early(epoch - 1)
                break
        self.autopilot.settle(AUTOPILOT_SETTLE_S)
        best = self.state.best_val_accuracy
        self.run.event("info", f"Finished after {epoch - 1} epochs; best validation accuracy {best:.4f}.")

    # ---------------------------------------------------------------- steering

    def take_pending_edit(self, epoch: int) -> None:
        """Validate and apply the last complete edit of the live config, if any."""
        raw = self.watcher.take_edit()
        if raw is None:
            if not self.config_path.exists():
                self.restore_file(None)
                self.run.event("warning", "The live config file was deleted; it was written again.", epoch)
            return
        try:
            change = review_edit(decode_edit(raw), self.state.config, epochs_done=epoch - 1)
        except ConfigError as exc:
            kept = keep_rejected(self.config_path, raw)
            self.restore_file(raw)
            self.run.event(
                "error",
                f"Rejected config edit before epoch {epoch}: {exc}. Training goes on with the last "
                f"good config; the rejected file is kept as {kept.name}.",
                epoch,
            )
            self.say(f"rejected config edit: {exc}")
            return
        if change is None:
            return
        version, done = self.apply_and_record(change, epoch)
        self.restore_file(raw)
        self.write_report(version, epoch)
        summary = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in change.diff.items())
        why = f" ({change.note.reason})" if change.note.reason else ""
        self.run.event("info", f"Config v{version} from {change.note.source} applied at epoch {epoch}: "
                        f"{summary}{why}. " + "; ".join(done), epoch)
        self.say(f"config v{version} ({change.note.source}): {summary}")

    def apply_and_record(self, change: AcceptedChange, epoch: int) -> tuple[int, list[str]]:
        """Make ``change`` real in the running process and record it; the version and what was done."""
        done = apply_change(self.state, change)
        version = self.run.config_version(change.config.model_dump(), source=change.note.source,
                                          reason=change.note.reason, epoch=epoch, change_id=change.note.id)
        return version, done

    def write_report(self, version: int, epoch: int) -> None:
        try:
            path = write_change_report(self.run.store, self.run.id, version, self.run.dir)
        except Exception as exc:  # a report is a record of the change, never a reason to stop training
            self.run.event("warning", f"Could not write the report of config v{version}: "
                                      f"{type(exc).__name__}: {exc}", epoch)
            return
        self.say(f"report: {path}")

    def write_state(self, epoch: int) -> None:
        settings = effective_settings(self.state, epoch, self.observations)
        settings["autopilot"] = self.autopilot.describe(self.state.config)
        write_state(self.run.dir, settings)

    def restore_file(self, expected: bytes | None) -> None:
        """Rewrite the file as the config in force, unless someone edited it meanwhile."""
        try:
            if expected is not None and read_live_bytes(self.config_path) != expected:
                return  # a newer edit arrived: leave it for the next boundary
        except FileNotFoundError:
            pass
        write_atomic(self.config_path, render_live_file(self.state.config.model_dump(), self.watcher.control))

    def at_step_boundary(self, epoch: int, step: int) -> None:
        """Honour pause and stop requests between two optimizer steps."""
        if self.watcher.control == "pause":
            self.wait_while_paused(epoch, step)
        if self.watcher.control == "stop":
            raise StopRequested

    def wait_while_paused(self, epoch: int, step: int) -> None:
        self.run.set_status("paused")
        self.run.event("info", f"Paused in epoch {epoch} before step {step + 1}.", epoch)
        self.say(f"paused in epoch {epoch}")
        began = time.perf_counter()
        while self.watcher.control == "pause":
            self.watcher.wait_for_notification(PAUSE_POLL_S)
        self.state.paused_seconds += time.perf_counter() - began
        if self.watcher.control == "run":
            self.run.set_status("running")
            self.run.event("info", f"Resumed in epoch {epoch}.", epoch)
            self.say("resumed")

    # ---------------------------------------------------------------- training

    def train_epoch(self, epoch: int) -> dict[str, float]:
        metrics, self.observations = train_one_epoch(
            self.state, epoch, lambda index: self.at_step_boundary(epoch, index),
            lambda index, value: self.on_nonfinite_loss(epoch, index + 1, value))
        return metrics

    # ------------------------------------------------------- non-finite loss

    def on_nonfinite_loss(self, epoch: int, batch: int, value: float) -> None:
        """The batch's step was not taken; stop, or lower the lr, as ``nonfinite_loss`` says."""
        config, guard = self.state.config, self.state.nonfinite
        verdict = guard.verdict(config)
        if verdict == "stop":
            raise NonfiniteLoss(stop_message(value, epoch, batch, guard, config, self.run.id))
        if verdict == "cut":
            self.lower_learning_rate(epoch, batch, value)

    def lower_learning_rate(self, epoch: int, batch: int, value: float) -> None:
        """Mid-epoch, through a recorded config version: the schedule reads learning_rate at every step."""
        config = self.state.config
        old = config.learning_rate
        reason = (f"the training loss was {value} at epoch {epoch}, batch {batch}; nonfinite_loss is skip, so the "
                  f"step was not taken and learning_rate x {config.nonfinite_lr_factor:g}")
        # The same review as an edit of the live file: validated, diffed, noted with its source.
        wanted = LiveFile(values={"learning_rate": old * config.nonfinite_lr_factor},
                          note=ChangeNote(source="trainer", reason=reason))
        change = review_edit(wanted, config, epochs_done=epoch - 1)
        version, _ = self.apply_and_record(change, epoch)
        proposed = change.config
        rewrite_values(self.config_path, {"learning_rate": proposed.learning_rate}, fallback=proposed.model_dump())
        self.write_report(version, epoch)
        self.run.event("warning", f"Non-finite training loss ({value}) at epoch {epoch}, batch {batch}: the step "
                       f"was not taken and learning_rate lowered {old:g} → {proposed.learning_rate:g} "
                       f"(config v{version}, from trainer).", epoch)
        self.say(f"non-finite loss at epoch {epoch}, batch {batch}: step skipped, lr {old:g} → "
                 f"{proposed.learning_rate:g}")

    def report_skipped_steps(self, epoch: int) -> None:
        skipped = self.state.nonfinite.skipped_in_epoch
        if skipped:
            self.run.event("warning", f"Epoch {epoch}: {skipped} batch(es) had a non-finite training loss and took "
                           "no step; the epoch's train metrics count only the others.", epoch)

    def evaluate(self) -> dict[str, float]:
        result = validate(self.state)
        self.last_probs = result.probs
        return result.metrics

    def observe_plateau(self, epoch: int, val_loss: float) -> None:
        config = self.state.config
        if config.lr_scheduler == "ReduceLROnPlateau" and self.state.plateau.observe(val_loss, config):
            self.run.event("info", f"ReduceLROnPlateau: no better validation loss for more than "
                           f"{config.plateau_patience} epochs; the lr is now {self.state.plateau.scale:g} "
                           f"x learning_rate.", epoch)

    def stop_early(self, epoch: int) -> None:
        """End the run with the best weights in the model and in the last checkpoint."""
        stop, state = self.state.early_stop, self.state
        if not stop.best_weights:
            # Early stopping was turned on after a resume, and the best epoch came before it:
            # its weights were never kept (checkpoints hold them only while it is on).
            message = (f"Early stopping after epoch {epoch}: no better validation loss for {epoch - stop.best_epoch} "
                       f"epochs. The weights of epoch {stop.best_epoch} were not kept across the resume, so the "
                       f"run ends with the weights of epoch {epoch}; best.pt holds the best accuracy's.")
        else:
            stop.restore(state.model)
            if state.ema.active:  # the best weights were the average's; it restarts from them
                state.ema.start(state.model, state.config.model_ema_decay)
            self.write_checkpoint("last", self.checkpoint_payload(epoch, restored_from_epoch=stop.best_epoch),
                                  metric="val/loss", value=stop.best_loss)
            message = (f"Early stopping after epoch {epoch}: no better validation loss for "
                       f"{epoch - stop.best_epoch} epochs; restored the weights of epoch {stop.best_epoch} "
                       f"(val loss {stop.best_loss:.4f}).")
        self.run.event("info", message, epoch)
        self.say(message)

    def checkpoint_payload(self, epoch: int, **extra) -> dict:
        return training_payload(self.state, epoch, autopilot_log=self.autopilot.log, **extra)

    def write_checkpoint(self, kind: str, payload: dict, *, metric: str, value: float) -> None:
        path = checkpoint_path(self.run.dir, kind)
        save_checkpoint(path, payload)
        if kind == "last":
            self.checkpointed_epoch = payload["epoch"]
        self.run.checkpoint(kind=kind, epoch=payload["epoch"], path=path, metric=metric, value=value)

    def save_checkpoints(self, epoch: int, metrics: dict[str, float]) -> None:
        payload = self.checkpoint_payload(epoch, metrics=metrics)
        accuracy = metrics["val/accuracy"]
        self.write_checkpoint("last", payload, metric="val/accuracy", value=accuracy)
        if accuracy > self.state.best_val_accuracy:
            self.state.best_val_accuracy = accuracy
            self.write_checkpoint("best", payload, metric="val/accuracy", value=accuracy)


def format_epoch(epoch: int, total: int, m: dict[str, float]) -> str:
    return (
        f"epoch {epoch}/{total}  train loss {m['train/loss']:.4f} acc {m['train/accuracy']:.4f}  "
        f"val loss {m['val/loss']:.4f} acc {m['val/accuracy']:.4f}  lr {m['lr']:.3g}  "
        f"{m['epoch_seconds']:.1f}s  {m['samples_per_sec']:.0f} samples/s"
    )
