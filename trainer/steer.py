"""``Steering``: a run's steering channel, between its live config file and its training loop.

The built-in trainer and ``tiller.run`` (a user's own loop) both steer through
it, so an edit is treated the same way whichever loop reads it:

- at an epoch boundary ``next_change`` takes the last complete edit of the file
  and reviews it (parse, validate, fixed keys, diff). A bad edit is kept beside
  the file, recorded as an error event, and the run goes on with the config in
  force; a good one comes back as an ``AcceptedChange``;
- the loop makes the change real, then ``commit`` records it: a new config
  version with its source and reason, the file rewritten as the config now in
  force, the change report, an event;
- between two steps ``at_step`` honours pause (waits) and stop (raises
  ``StopRequested``).

Free of torch: nothing here trains.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Callable

from store import Run
from trainer.advisor.report import write_change_report
from trainer.config import ConfigError, TrainConfig
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
from trainer.review import AcceptedChange, decode_edit, review_edit
from trainer.watcher import ConfigWatcher

# A paused run wakes on the file's change notification; this is the fallback poll
# for file systems that send none.
PAUSE_POLL_S = 0.2


class StopRequested(Exception):
    """The live config asked the run to stop."""


class Steering:
    """The live config of ``run``: watched while the block is open, reviewed at each boundary."""

    def __init__(self, run: Run, config: TrainConfig, say: Callable[[str], None] = print,
                 hot_keys: Collection[str] | None = None, on_pause: Callable[[], None] = lambda: None,
                 on_resume: Callable[[], None] = lambda: None):
        """``on_pause`` and ``on_resume`` tell a live display when the run starts and stops waiting."""
        self.run, self.config, self.say = run, config, say
        self.on_pause, self.on_resume = on_pause, on_resume
        self.hot_keys = None if hot_keys is None else list(hot_keys)  # None: every hot key of TrainConfig
        self.path = run.dir / CONFIG_FILENAME
        self.watcher = ConfigWatcher(self.path)
        self._taken: bytes | None = None  # the file content the change in review came from

    def __enter__(self) -> "Steering":
        self.watcher.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.watcher.__exit__(*exc_info)

    @property
    def control(self) -> str:
        return self.watcher.control

    # ------------------------------------------------------- epoch boundary

    def next_change(self, epoch: int) -> AcceptedChange | None:
        """The reviewed pending edit, to apply before ``epoch``; ``None`` if there is none or it was rejected."""
        raw = self.watcher.take_edit()
        if raw is None:
            if not self.path.exists():
                self.rewrite_file(None)
                self.run.event("warning", "The live config file was deleted; it was written again.", epoch)
            return None
        try:
            change = review_edit(decode_edit(raw), self.config, epochs_done=epoch - 1, hot_keys=self.hot_keys)
        except ConfigError as exc:
            self.reject(raw, exc, epoch)
            return None
        self._taken = raw
        return change

    def reject(self, raw: bytes, error: ConfigError, epoch: int) -> None:
        kept = keep_rejected(self.path, raw)
        self.rewrite_file(raw)
        self.run.event("error", f"Rejected config edit before epoch {epoch}: {error}. Training goes on with the "
                                f"last good config; the rejected file is kept as {kept.name}.", epoch)
        self.say(f"rejected config edit: {error}")

    def commit(self, change: AcceptedChange, epoch: int, done: Iterable[str] = ()) -> int:
        """Record ``change``, made real by the loop before ``epoch`` (``done`` says how); its version."""
        # The file first, then the record: whoever waits for the new version (a person, a
        # test) and saves the next edit then never has it overwritten by this rewrite.
        self.config = change.config
        self.rewrite_file(self._taken)
        self._taken = None
        version = self.record(change, epoch)
        self.write_report(version, epoch)
        summary = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in change.diff.items())
        why = f" ({change.note.reason})" if change.note.reason else ""
        self.run.event("info", f"Config v{version} from {change.note.source} applied at epoch {epoch}: "
                                f"{summary}{why}. " + "; ".join(done), epoch)
        self.say(f"config v{version} ({change.note.source}): {summary}")
        return version

    def record(self, change: AcceptedChange, epoch: int) -> int:
        self.config = change.config
        return self.run.config_version(change.config.model_dump(), source=change.note.source,
                                       reason=change.note.reason, epoch=epoch, change_id=change.note.id)

    def propose(self, values: dict, *, source: str, reason: str, epoch: int) -> AcceptedChange | None:
        """A change the trainer makes itself, reviewed like any edit; ``record_own`` records it."""
        wanted = LiveFile(values=values, note=ChangeNote(source=source, reason=reason))
        return review_edit(wanted, self.config, epochs_done=epoch - 1, hot_keys=self.hot_keys)

    def record_own(self, change: AcceptedChange, epoch: int) -> int:
        """Record a change from ``propose`` and show it in the file, so no later edit takes it back."""
        version = self.record(change, epoch)
        rewrite_values(self.path, {k: getattr(change.config, k) for k in change.diff},
                       fallback=change.config.model_dump())
        self.write_report(version, epoch)
        return version

    def write_report(self, version: int, epoch: int) -> None:
        try:
            path = write_change_report(self.run.store, self.run.id, version, self.run.dir)
        except Exception as exc:  # a report is a record of the change, never a reason to stop training
            self.run.event("warning", f"Could not write the report of config v{version}: "
                                      f"{type(exc).__name__}: {exc}", epoch)
            return
        self.say(f"report: {path}")

    def rewrite_file(self, expected: bytes | None) -> None:
        """Rewrite the file as the config in force, unless someone edited it meanwhile."""
        try:
            if expected is not None and read_live_bytes(self.path) != expected:
                return  # a newer edit arrived: leave it for the next boundary
        except FileNotFoundError:
            pass
        write_atomic(self.path, render_live_file(self.config.model_dump(), self.watcher.control))

    # ------------------------------------------------------ step boundary

    def at_step(self, epoch: int, step: int) -> float:
        """Honour pause and stop requests between two optimizer steps; the seconds spent paused."""
        control, waited = self.control, 0.0
        if control == "pause":
            control, waited = self.wait_while_paused(epoch, step)
        if control == "stop":
            raise StopRequested
        return waited

    def wait_while_paused(self, epoch: int, step: int,
                          share: Callable[[str], str] = lambda control: control) -> tuple[str, float]:
        """Wait until the file says run or stop; that control, and the seconds waited.

        ``share`` passes each control read to the other processes of a job and
        returns the one they all act on, so they wait and go on together.
        """
        self.paused(epoch, step)
        began, control = time.perf_counter(), "pause"
        while control == "pause":
            self.watcher.wait_for_notification(PAUSE_POLL_S)
            control = share(self.control)
        if control == "run":
            self.resumed(epoch)
        return control, time.perf_counter() - began

    def paused(self, epoch: int, step: int) -> None:
        self.run.set_status("paused")
        where = f"before step {step + 1}" if step >= 0 else "before it starts"
        self.run.event("info", f"Paused in epoch {epoch} {where}.", epoch)
        self.say(f"paused in epoch {epoch}")
        self.on_pause()

    def resumed(self, epoch: int) -> None:
        self.run.set_status("running")
        self.run.event("info", f"Resumed in epoch {epoch}.", epoch)
        self.say("resumed")
        self.on_resume()

    def stopped(self, epoch: int, detail: str = "", where: str = "") -> None:
        """The run ends on a stop request: recorded as ``stopped``; ``detail`` adds what was kept.

        ``where`` says when, if not "during epoch N" (a stop seen between epochs).
        """
        where = where or f"during epoch {epoch}"
        self.run.mark_stopped()
        self.run.event("warning", f"Stopped {where} on request{detail}.", epoch or None)
        self.say(f"stopped {where}")
