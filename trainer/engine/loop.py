"""The training loop: one epoch at a time, steerable between epochs.

Order of one epoch, top to bottom:
  1. take the pending edit of the live config (validate, apply, record)
  2. train, checking pause/stop at every step boundary
  3. evaluate on the validation split
  4. log metrics, save last (and best) checkpoint

The same loop runs in every process of a data-parallel job (``state.world``):
rank 0 steers and records, the others train their shard and follow it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

from tiller.store import Run, Store, StoreReplaced, StoreWriteError
from tiller.store.store import BUILT_IN
from tiller.trainer.advisor.autopilot import Autopilot
from tiller.trainer.engine.appliers import apply_change
from tiller.trainer.engine.checkpoint import CheckpointWriteError, checkpoint_path, save_checkpoint, training_payload
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.data import class_counts
from tiller.trainer.engine.distributed import PeerLost, World, ignore_termination, weights_fingerprint
from tiller.trainer.engine.epoch import EpochObservations, train_one_epoch, validate
from tiller.trainer.engine.introspect import effective_settings, write_state
from tiller.trainer.engine.job_steering import JobSteering, RanksDisagree
from tiller.trainer.steering.live_config import CONFIG_FILENAME, render_live_file, write_atomic
from tiller.trainer.engine.nonfinite import NonfiniteLoss, stop_message
from tiller.trainer.engine.progress import LineReporter, ProgressReporter, silent
from tiller.trainer.engine.state import TrainingState, build_state  # noqa: F401  (build_state re-exported for tests)
from tiller.trainer.steering.steer import Steering, StopRequested

RANKS_FILENAME = "ranks.jsonl"  # a data-parallel run: each rank's config in force and weights, per epoch
# How long an epoch boundary waits for an autopilot step still asking its
# advisor: the offline rules answer well within it, so their changes land at
# the very next epoch; a slow Claude reply lands at a later boundary instead
# of holding up training.
AUTOPILOT_SETTLE_S = 2.0


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
    progress: ProgressReporter | None = None,
    world: World | None = None,
) -> str:
    """Train ``config`` as a new run in ``store``; returns the run id.

    What it has to say goes to ``progress`` (``tiller train``'s live display),
    or, without one, line by line to ``say``.

    Every process of a data-parallel job calls this with its ``world``: rank 0
    opens, steers and records the run (and returns its id), the others train
    their shard and follow rank 0 (and return ``""``).
    """
    world = world or World.single()
    config = world.broadcast(config)  # one config for the job, even if the ranks' files differ
    state = build_state(config, world)
    if not world.is_main:
        run_epochs(state, None, silent())  # rank 0 speaks for the job
        return ""
    progress = progress or LineReporter(say)
    # BUILT_IN: the one trainer whose checkpoints `tiller resume` can continue. The run is this
    # process's (an ownership lock) until the block ends.
    with store.start_run(model=config.model_name, dataset=dataset_label(config), name=name,
                         trainer=BUILT_IN) as run:
        config_path = run.dir / CONFIG_FILENAME
        write_atomic(config_path, render_live_file(config.model_dump()))
        run.config_version(config.model_dump(), source=source, reason=reason or "initial config", epoch=1)
        announce_start(run, state)
        progress.say(f"run {run.id}  (steer it by editing {config_path})")
        run_epochs(state, run, progress)
    return run.id


def run_epochs(state: TrainingState, run: Run | None, progress: ProgressReporter, first_epoch: int = 1,
               before_first: Callable[[Path], None] | None = None) -> None:
    """Train ``run`` from ``first_epoch`` to its end, steered through its live config file.

    ``run`` is ``None`` on the ranks of a job other than 0: they follow rank 0's
    steering and record nothing. ``before_first(config_path)`` runs once the
    file is watched, so what it writes there is taken at the first epoch
    boundary. A database or disk that takes no more writes stops training with
    ``TrainingHalted``, which says how to go on.
    """
    if run is None:
        EpochLoop(state, None, JobSteering(state.world, None), progress.say, progress).run_to_end(first_epoch)
        return
    with Steering(run, state.config, progress.say, on_pause=lambda: progress.paused(run.id),
                  on_resume=progress.resumed) as steering:
        if before_first is not None:
            before_first(steering.path)
        loop = EpochLoop(state, run, JobSteering(state.world, steering), progress.say, progress)
        try:
            loop.run_to_end(first_epoch)
        except (StoreWriteError, CheckpointWriteError) as exc:
            raise TrainingHalted(halted_message(exc, run, loop.checkpointed_epoch)) from exc
        except OSError as exc:  # state.json, a report, the live file: the runs folder turned read-only or full
            if not refused_write_in(exc, run.store.runs_dir):
                raise
            raise TrainingHalted(halted_message(exc, run, loop.checkpointed_epoch)) from exc
        except PeerLost as exc:
            # torchrun ends the other processes next, this one included: the failure
            # must be recorded before a SIGTERM can cut the recording short.
            ignore_termination()  # torchrun's SIGTERM
            raise PeerLost(f"{exc}\n  The run is recorded as failed; {kept_message(loop.checkpointed_epoch)} "
                           f"(in {run.dir}). Go on with: tiller resume {run.id}") from exc


def kept_message(checkpointed_epoch: int) -> str:
    return (f"checkpoints/last.pt holds epoch {checkpointed_epoch}" if checkpointed_epoch
            else "no epoch was checkpointed yet, so it starts again from epoch 1")


def halted_message(exc: Exception, run: Run, checkpointed_epoch: int) -> str:
    if isinstance(exc, StoreReplaced):  # the database files went away under the run: only its folder is sure
        return (f"training stopped: {exc}.\n"
                f"  The run's folder is kept: {kept_message(checkpointed_epoch)} (in {run.dir}).\n"
                f"  Once the database files are back in place, `tiller show {run.id}` says which epochs it holds; "
                f"go on with: tiller resume {run.id}")
    return (f"training stopped: {exc}\n"
            f"  Everything written before is kept: the metrics and config history in the database, and "
            f"{kept_message(checkpointed_epoch)} (in {run.dir}).\n"
            f"  Free some disk space (or make the runs folder writable again), then go on with: "
            f"tiller resume {run.id}")


# A file system refusing a write (permissions, read-only, full, over quota), not a bug or bad data.
_REFUSED_WRITE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def refused_write_in(exc: OSError, folder: Path) -> bool:
    """Whether ``exc`` is the file system refusing a write to a file in ``folder``."""
    return (exc.errno in _REFUSED_WRITE and exc.filename is not None
            and Path(os.fsdecode(exc.filename)).resolve().is_relative_to(folder))


def dataset_label(config: TrainConfig) -> str:
    if config.data_dir:
        return Path(config.data_dir.replace("\\", "/")).name or config.data_dir
    return "digits" if config.dataset == "auto" else config.dataset


def announce_start(run: Run, state: TrainingState) -> None:
    """The start event, the notes of building the model and data, and the validation samples."""
    data, world = state.data, state.world
    where = f"{state.device}" + (f", {world.describe()} (each trains 1/{world.size} of every epoch)"
                                 if world.distributed else "")
    run.event("info", f"Started {state.config.model_name} on {data.source}: {len(data.train)} training and "
              f"{len(data.val)} validation samples, {data.num_classes} classes, on {where}. "
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
    """One run's epochs in one process; ``run`` is ``None`` on the ranks of a job that only follow."""

    def __init__(self, state: TrainingState, run: Run | None, steering: JobSteering, say: Callable[[str], None],
                 progress: ProgressReporter | None = None):
        self.state, self.run, self.steering, self.say = state, run, steering, say
        self.progress = progress or silent()  # ``say`` alone: the lines, and no display
        self.world = state.world
        self.observations = EpochObservations()
        self.last_probs = None
        self.autopilot = Autopilot(run.store.runs_dir, run.id, run.event) if run is not None else None
        self.checkpointed_epoch = 0  # the epoch checkpoints/last.pt holds

    def run_to_end(self, first_epoch: int = 1) -> None:
        epoch = first_epoch
        self.checkpointed_epoch = first_epoch - 1
        while True:
            self.settle_autopilot()
            self.take_pending_edit(epoch)
            if epoch > self.state.config.num_epochs:
                break
            started, self.state.paused_seconds = time.perf_counter(), 0.0
            self.state.nonfinite.start_epoch()
            try:
                metrics = self.train_epoch(epoch)
            except StopRequested:
                self.steering.stopped(epoch, f"; the last checkpoint is from epoch {epoch - 1}")
                return
            self.progress.validating()
            self.report_skipped_steps(epoch)
            metrics.update(self.evaluate())
            self.observe_plateau(epoch, metrics["val/loss"])
            self.state.early_stop.observe(epoch, metrics["val/loss"], self.state.evaluated_model)
            metrics["epoch_seconds"] = time.perf_counter() - started - self.state.paused_seconds
            metrics["lr"] = self.state.optimizer.param_groups[0]["lr"]
            self.check_ranks_agree(epoch)
            if self.run is not None:
                self.record_epoch(epoch, metrics)
            epoch += 1
            if self.state.early_stop.should_stop(epoch - 1, self.state.config):
                self.stop_early(epoch - 1)
                break
        self.settle_autopilot()
        best = self.state.best_val_accuracy
        self.event("info", f"Finished after {epoch - 1} epochs; best validation accuracy {best:.4f}.")

    def record_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Rank 0: the epoch's metrics, predictions, state and checkpoints."""
        self.run.log(epoch, metrics)
        self.run.flush()  # the epoch is durable before anything reports it done
        self.run.predictions(epoch, self.last_probs.numpy())
        self.autopilot.after_epoch(epoch, self.state.config)
        self.write_state(epoch)
        self.save_checkpoints(epoch, metrics)
        self.say(format_epoch(epoch, self.state.config.num_epochs, metrics))
        self.progress.epoch_finished(epoch, metrics)

    def event(self, level: str, message: str, epoch: int | None = None) -> None:
        if self.run is not None:
            self.run.event(level, message, epoch)

    def settle_autopilot(self) -> None:
        if self.autopilot is not None:
            self.autopilot.settle(AUTOPILOT_SETTLE_S)

    # ---------------------------------------------------------------- steering

    def take_pending_edit(self, epoch: int) -> None:
        """Validate, apply and record the last complete edit of the live config, if any."""
        change = self.steering.next_change(epoch)
        if change is not None:
            self.steering.commit(change, epoch, apply_change(self.state, change))

    def write_state(self, epoch: int) -> None:
        settings = effective_settings(self.state, epoch, self.observations)
        settings["autopilot"] = self.autopilot.describe(self.state.config)
        write_state(self.run.dir, settings)

    def at_step_boundary(self, epoch: int, step: int) -> None:
        """Honour pause and stop requests between two optimizer steps (every rank at the same step)."""
        self.progress.batches_done(step)
        self.state.paused_seconds += self.steering.at_step(epoch, step)

    # ----------------------------------------------------------- data parallel

    def check_ranks_agree(self, epoch: int) -> None:
        """Each rank's config in force and weights, side by side in ``ranks.jsonl``; a job that drifted apart fails."""
        if not self.world.distributed:
            return
        reports = self.world.gather(rank_report(self.state, self.observations))
        if self.run is not None:
            with open(self.run.dir / RANKS_FILENAME, "a", encoding="utf-8") as log:
                log.write(json.dumps({"epoch": epoch, "ranks": reports}) + "\n")
        if len({report["weights"] for report in reports}) > 1:
            raise RanksDisagree(f"after epoch {epoch} the processes hold different weights "
                                f"({[report['weights'] for report in reports]}); the job cannot go on as one run")

    # ---------------------------------------------------------------- training

    def train_epoch(self, epoch: int) -> dict[str, float]:
        metrics, self.observations = train_one_epoch(
            self.state, epoch, lambda index: self.at_step_boundary(epoch, index),
            lambda index, value: self.on_nonfinite_loss(epoch, index + 1, value),
            on_start=lambda batches: self.progress.epoch_started(epoch, self.state.config.num_epochs, batches))
        return metrics

    # ------------------------------------------------------- non-finite loss

    def on_nonfinite_loss(self, epoch: int, batch: int, value: float) -> None:
        """The batch's step was not taken; stop, or lower the lr, as ``nonfinite_loss`` says."""
        config, guard = self.state.config, self.state.nonfinite
        verdict = guard.verdict(config)
        if verdict == "stop":
            raise NonfiniteLoss(stop_message(value, epoch, batch, guard, config, self.run.id if self.run else ""))
        if verdict == "cut":
            self.lower_learning_rate(epoch, batch, value)

    def lower_learning_rate(self, epoch: int, batch: int, value: float) -> None:
        """Mid-epoch, through a recorded config version: the schedule reads learning_rate at every step."""
        config = self.state.config
        old = config.learning_rate
        reason = (f"the training loss was {value} at epoch {epoch}, batch {batch}; nonfinite_loss is skip, so the "
                  f"step was not taken and learning_rate x {config.nonfinite_lr_factor:g}")
        # Reviewed like an edit of the live file: validated, diffed, noted with its source.
        change = self.steering.propose({"learning_rate": old * config.nonfinite_lr_factor},
                                       source="trainer", reason=reason, epoch=epoch)
        apply_change(self.state, change)
        version = self.steering.record_own(change, epoch)
        new = change.config.learning_rate
        self.event("warning", f"Non-finite training loss ({value}) at epoch {epoch}, batch {batch}: the step "
                   f"was not taken and learning_rate lowered {old:g} → {new:g} (config v{version}, from trainer).", epoch)
        self.say(f"non-finite loss at epoch {epoch}, batch {batch}: step skipped, lr {old:g} → {new:g}")

    def report_skipped_steps(self, epoch: int) -> None:
        skipped = self.state.nonfinite.skipped_in_epoch
        if skipped:
            self.event("warning", f"Epoch {epoch}: {skipped} batch(es) had a non-finite training loss and took "
                       "no step; the epoch's train metrics count only the others.", epoch)

    def evaluate(self) -> dict[str, float]:
        result = validate(self.state)
        self.last_probs = result.probs
        return result.metrics

    def observe_plateau(self, epoch: int, val_loss: float) -> None:
        config = self.state.config
        if config.lr_scheduler == "ReduceLROnPlateau" and self.state.plateau.observe(val_loss, config):
            self.event("info", f"ReduceLROnPlateau: no better validation loss for more than "
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
            if self.run is not None:
                self.write_checkpoint("last", self.checkpoint_payload(epoch, restored_from_epoch=stop.best_epoch),
                                      metric="val/loss", value=stop.best_loss)
            message = (f"Early stopping after epoch {epoch}: no better validation loss for "
                       f"{epoch - stop.best_epoch} epochs; restored the weights of epoch {stop.best_epoch} "
                       f"(val loss {stop.best_loss:.4f}).")
        self.event("info", message, epoch)
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


def rank_report(state: TrainingState, observed: EpochObservations) -> dict:
    """What one rank of a job had in force during the epoch, for ``ranks.jsonl``."""
    return {
        "rank": state.world.rank,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "learning_rate": state.config.learning_rate,
        "batch_size": state.batch_size,
        "last_lr": observed.last_lr,
        "largest_batch": observed.largest_batch,
        "batches": observed.batches,
        "weights": weights_fingerprint(state.model.state_dict()),
    }


def format_epoch(epoch: int, total: int, m: dict[str, float]) -> str:
    return (
        f"epoch {epoch}/{total}  train loss {m['train/loss']:.4f} acc {m['train/accuracy']:.4f}  "
        f"val loss {m['val/loss']:.4f} acc {m['val/accuracy']:.4f}  lr {m['lr']:.3g}  "
        f"{m['epoch_seconds']:.1f}s  {m['samples_per_sec']:.0f} samples/s"
    )
