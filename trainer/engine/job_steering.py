"""The run's steering as every process of a job sees it.

Only rank 0 watches the live config file and records; the others hear from it.
At an epoch boundary rank 0 reviews the pending edit and broadcasts the
accepted change, so every rank applies the identical config before the same
step; each rank says what it did, and rank 0 records the version only when
all agree. Between steps rank 0's pause/stop control is broadcast, so all
ranks pause, go on or stop at the same step.

For a single process (``World.single()``) every broadcast is the identity and
this is ``Steering`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from tiller.trainer.engine.distributed import World
from tiller.trainer.steering.review import AcceptedChange
from tiller.trainer.steering.steer import Steering, StopRequested


class RanksDisagree(RuntimeError):
    """The processes of a job did not apply the same change: their models would drift apart."""


class JobSteering:
    def __init__(self, world: World, steering: Steering | None):
        if world.is_main and steering is None:
            raise ValueError("rank 0 steers the job: it needs the run's Steering")
        self.world, self.steering = world, steering

    # ------------------------------------------------------- epoch boundary

    def next_change(self, epoch: int) -> AcceptedChange | None:
        change = self.steering.next_change(epoch) if self.world.is_main else None
        return self.world.broadcast(change)

    def commit(self, change: AcceptedChange, epoch: int, done: Iterable[str]) -> None:
        """Record ``change`` once every rank has applied it (``done``: what this rank did)."""
        done = list(done)
        self.check_same(change, epoch)
        if self.world.is_main:
            if self.world.distributed:
                done.append(f"applied by all {self.world.size} processes")
            self.steering.commit(change, epoch, done)

    def check_same(self, change: AcceptedChange, epoch: int) -> None:
        """Every rank holds the same config, from the same boundary (how each applied it may differ in wording)."""
        reports = self.world.gather((epoch, change.config.model_dump()))
        if any(report != reports[0] for report in reports):
            differing = [rank for rank, report in enumerate(reports) if report != reports[0]]
            raise RanksDisagree(f"ranks {differing} applied the change before epoch {epoch} differently from "
                                f"rank 0: {reports}")

    def propose(self, values: dict, *, source: str, reason: str, epoch: int) -> AcceptedChange | None:
        change = self.steering.propose(values, source=source, reason=reason, epoch=epoch) if self.world.is_main else None
        return self.world.broadcast(change)

    def record_own(self, change: AcceptedChange, epoch: int) -> int:
        version = self.steering.record_own(change, epoch) if self.world.is_main else 0
        return self.world.broadcast(version)

    # ------------------------------------------------------ step boundary

    def at_step(self, epoch: int, step: int) -> float:
        """Pause or stop, all ranks at this step, as rank 0's file says; the seconds spent paused."""
        control, waited = self.world.control(self._read()), 0.0
        if control == "pause":
            if self.world.is_main:
                control, waited = self.steering.wait_while_paused(epoch, step, share=self.world.control)
            else:
                control, waited = self.follow_pause()
        if control == "stop":
            raise StopRequested
        return waited

    def follow_pause(self) -> tuple[str, float]:
        """Another rank's side of ``Steering.wait_while_paused``: one shared control per poll of rank 0."""
        began, control = time.perf_counter(), "pause"
        while control == "pause":
            control = self.world.control("run")  # rank 0 sends one every PAUSE_POLL_S
        return control, time.perf_counter() - began

    def _read(self) -> str:
        return self.steering.control if self.world.is_main else "run"

    # ----------------------------------------------------------- records

    def stopped(self, epoch: int, detail: str = "") -> None:
        if self.world.is_main:
            self.steering.stopped(epoch, detail)

