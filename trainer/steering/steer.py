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

import os
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tiller.store import Run
from tiller.trainer.advisor.report import write_change_report
from tiller.trainer.steering.config import ConfigError, TrainConfig
from tiller.trainer.steering.live_config import (
    CONFIG_FILENAME,
    ChangeNote,
    LiveFile,
    keep_rejected,
    path_identity,
    read_live_bytes,
    render_live_file,
    rewrite_values,
    same_save,
    write_atomic,
)
from tiller.trainer.steering.review import AcceptedChange, decode_edit, review_edit
from tiller.trainer.steering.watcher import ConfigWatcher

# A paused run wakes on the file's change notification; this is the fallback poll
# for file systems that send none.
PAUSE_POLL_S = 0.2


class StopRequested(Exception):
    """The live config asked the run to stop."""


@dataclass(frozen=True)
class KeptEdit:
    """A rejected edit kept by renaming the live file itself, followed in case its save was still going on."""

    path: Path  # config.rejected-<time>.json
    identity: tuple[int, int, int, int] | None  # of the save that was read and rejected
    restored: bytes | None  # what was written back to the live file; None: a newer save stood there
    epoch: int  # the boundary that rejected it


def moved(kept: Path, raw: bytes) -> bool:
    """Whether ``kept`` is the very file ``raw`` was read from (renamed), not a copy of its bytes."""
    identity, now = getattr(raw, "identity", None), path_identity(kept)
    return identity is not None and now is not None and now[:2] == identity[:2]


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
        self._kept: KeptEdit | None = None  # the last rejected edit kept by renaming the file, followed

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
        self.follow_kept_edit(epoch)
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
        except Exception as exc:  # noqa: BLE001 - the file is anyone's text: no content of it may end a run
            self.reject(raw, ConfigError([f"it could not be reviewed ({type(exc).__name__}: {exc})"]), epoch)
            return None
        self._taken = raw
        return change

    def reject(self, raw: bytes, error: ConfigError, epoch: int) -> None:
        kept = keep_rejected(self.path, raw)
        restored = self.rewrite_file(raw)
        if kept is not None and moved(kept, raw):
            self._kept = KeptEdit(kept, raw.identity, restored, epoch)
        where = (f"the rejected file is kept as {kept.name}" if kept is not None
                 else "it was replaced by a newer save before it could be kept")
        self.run.event("error", f"Rejected config edit before epoch {epoch}: {error}. Training goes on with the "
                                f"last good config; {where}.", epoch)
        self.say(f"rejected config edit: {error}")

    def follow_kept_edit(self, epoch: int) -> None:
        """Take back a rejected edit that was written to after it was kept: a save still going on when read.

        An editor that rewrites the file in place (truncate, write, write) may be
        halfway when a boundary reads it. The half is rejected and the file
        renamed to ``config.rejected-*``, so the rest of the save lands there,
        not in a replaced file gone for good. If the live file still holds the
        config written back at the rejection, the completed save becomes the live
        file again and is reviewed now; if it was saved again since, the newer
        save counts and the kept one is reported, not lost.
        """
        kept, self._kept = self._kept, None
        if kept is None:
            return
        now = path_identity(kept.path)
        if now is None:
            return  # removed or renamed by the user: theirs to keep
        if now == kept.identity:
            self._kept = kept  # nothing written to it yet
            return
        name = kept.path.name
        if kept.restored is not None and self.live_bytes() == kept.restored:
            try:
                os.replace(kept.path, self.path)
            except FileNotFoundError:
                return
            self.run.event("info", f"{name}, rejected before epoch {kept.epoch}, was written to after it was "
                                   "read (a save still going on); it is the live config file again and is "
                                   f"reviewed before epoch {epoch}.", epoch)
            return
        self.run.event("warning", f"{name}, rejected before epoch {kept.epoch}, was written to after it was read "
                                  "(a save still going on), but the live config file was saved again since, so "
                                  f"that newer save counts. What was written is kept in {name}: copy what you "
                                  "want from it into config.json.", epoch)

    def live_bytes(self) -> bytes | None:
        try:
            return read_live_bytes(self.path)
        except FileNotFoundError:
            return None

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

    def rewrite_file(self, expected: bytes | None) -> bytes | None:
        """Rewrite the file as the config in force, unless someone edited it meanwhile; the bytes written, if any."""
        if expected is not None:
            current = self.live_bytes()
            if current is not None and not same_save(current, expected):
                return None  # a newer edit arrived: leave it for the next boundary
        text = render_live_file(self.config.model_dump(), self.watcher.control)
        write_atomic(self.path, text)
        return text.encode("utf-8")

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
