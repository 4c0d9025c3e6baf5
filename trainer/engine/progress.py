"""What ``tiller train`` shows while it trains: plain lines, or a live progress display.

The training loop tells a ``ProgressReporter`` what happens (an epoch starts,
a batch is about to run, validation begins, the epoch is done, the run pauses)
and hands it every line worth keeping (``say``). Two reporters:

- ``LineReporter`` prints the lines and nothing else: what a log file, a pipe,
  a test or CI reads, exactly as before there was a display;
- ``LiveReporter`` (an interactive terminal) prints the same lines above a
  two-line live display: the epoch n/N, a bar over its batches, what is left of
  the epoch and of the run, and the last epoch's metrics.

Only rank 0 of a data-parallel job reports; the other ranks get a silent one.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from typing import Callable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from tiller.trainer.steering.safe_text import terminal_text

Say = Callable[[str], None]


class ProgressReporter:
    """Told by the loop what happens; this base shows nothing but the lines it is given."""

    def say(self, line: str) -> None:
        """A line to keep: an epoch's summary, an applied config version, a pause."""

    def epoch_started(self, epoch: int, total_epochs: int, batches: int) -> None:
        """Training of ``epoch`` begins; ``total_epochs`` is the config's now (an edit may change it)."""

    def batches_done(self, done: int) -> None:
        """``done`` batches of the current epoch are trained (called before each batch)."""

    def validating(self) -> None:
        """Every batch is trained; the validation pass runs."""

    def epoch_finished(self, epoch: int, metrics: dict[str, float]) -> None:
        """The epoch is recorded, with ``metrics`` (the keys of ``format_epoch``)."""

    def paused(self, run_id: str) -> None:
        """The run waits for ``tiller resume``."""

    def resumed(self) -> None:
        """The run goes on after a pause."""

    def __enter__(self) -> "ProgressReporter":
        return self

    def __exit__(self, *exc_info) -> None:
        pass


class LineReporter(ProgressReporter):
    """Lines only, through ``say``: the output of ``tiller train`` when stdout is not a terminal."""

    def __init__(self, say: Say):
        self._say = say

    def say(self, line: str) -> None:
        # A log file is read in a terminal too: a reason or message must not drive it.
        self._say(terminal_text(line))


def silent() -> ProgressReporter:
    return ProgressReporter()


def for_stdout() -> ProgressReporter:
    """The live display in an interactive terminal; plain, flushed lines anywhere else."""
    console = Console()
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveReporter(console)
    # Flushed: the demo sends this to a log file that the dashboard's users may be reading.
    return LineReporter(functools.partial(print, flush=True))


# ------------------------------------------------------------------ estimates

class EtaClock:
    """What is left of the epoch and of the run, from the batch rate and the epochs done; pauses excluded."""

    RECENT_EPOCHS = 3  # an edit (batch size, model freeze) changes the pace: trust the last few epochs

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.epoch_seconds: deque[float] = deque(maxlen=self.RECENT_EPOCHS)
        self.began = clock()
        self.paused_s, self.pause_began = 0.0, None

    def start_epoch(self) -> None:
        self.began, self.paused_s, self.pause_began = self.clock(), 0.0, None

    def pause(self) -> None:
        self.pause_began = self.clock()

    def resume(self) -> None:
        if self.pause_began is not None:
            self.paused_s += self.clock() - self.pause_began
            self.pause_began = None

    def active_seconds(self) -> float:
        return self.clock() - self.began - self.paused_s

    def finish_epoch(self) -> None:
        self.epoch_seconds.append(self.active_seconds())

    def epoch_left(self, done: int, batches: int) -> float | None:
        """Seconds of training left in this epoch; ``None`` before its first batch is done."""
        if done <= 0 or batches <= 0:
            return None
        return self.active_seconds() / done * max(batches - done, 0)

    def run_left(self, epoch: int, total_epochs: int, done: int, batches: int) -> float | None:
        """Seconds left in the run: this epoch's rest, then the later epochs at the recent pace."""
        this_epoch = self.epoch_left(done, batches)
        if self.epoch_seconds:
            per_epoch = sum(self.epoch_seconds) / len(self.epoch_seconds)
            this_epoch = max(per_epoch - self.active_seconds(), 0.0) if this_epoch is None else this_epoch
        elif this_epoch is not None:
            per_epoch = self.active_seconds() + this_epoch  # the first epoch, projected
        else:
            return None
        return this_epoch + max(total_epochs - epoch, 0) * per_epoch


def clock_text(seconds: float | None) -> str:
    """``0:42``, ``12:05``, ``2:03:09``; ``-:--`` while nothing can be estimated yet."""
    if seconds is None:
        return "-:--"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status_text(epoch: int, m: dict[str, float]) -> str:
    """The last epoch's metrics, shorter than its permanent line."""
    return (f"after epoch {epoch}:  train loss {m['train/loss']:.4f} acc {m['train/accuracy']:.4f}   "
            f"val loss {m['val/loss']:.4f} acc {m['val/accuracy']:.4f}   lr {m['lr']:.3g}")


# ------------------------------------------------------------- live display

class _Display(Progress):
    """rich's ``Progress`` with a status line under its bar."""

    def __init__(self, *columns, **options):
        self.status = Text("")  # set before Progress renders itself for the first time
        super().__init__(*columns, **options)

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.status:
            yield self.status


class LiveReporter(ProgressReporter):
    """The lines of ``LineReporter`` printed above a calm, two-line live display.

    Redrawn at most ``REFRESH_S`` apart, in place, so a fast model does not
    flicker; a pause, an epoch's start and its end are shown at once.
    """

    REFRESH_S = 0.25

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic):
        self.console, self.clock = console, clock
        self.eta = EtaClock(clock)
        self.display = _Display(
            TextColumn("{task.description}"),
            BarColumn(bar_width=32, complete_style="cyan", finished_style="green"),
            TextColumn("{task.completed:>4.0f}/{task.total:.0f} batches"),
            TextColumn("{task.fields[left]}"),
            console=console, auto_refresh=False, transient=True,  # the display leaves; the lines stay
        )
        self.task: TaskID | None = None
        self.epoch, self.total_epochs, self.batches, self.done = 0, 0, 0, 0
        self.last_drawn = float("-inf")

    def __enter__(self) -> "LiveReporter":
        self.display.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.display.stop()

    def say(self, line: str) -> None:
        # Plain like the log file's lines: no markup ([red], [link=…]) or :emoji: read into it, no
        # numbers coloured, no escape sequence passed to the terminal.
        self.console.print(terminal_text(line), markup=False, emoji=False, highlight=False, soft_wrap=True)

    def epoch_started(self, epoch: int, total_epochs: int, batches: int) -> None:
        self.epoch, self.total_epochs, self.batches, self.done = epoch, total_epochs, batches, 0
        self.eta.start_epoch()
        if self.task is None:
            self.task = self.display.add_task(self.label(), total=batches, left="")
        self.show(self.label(), self.left_text(), draw=True)

    def batches_done(self, done: int) -> None:
        self.done = done
        self.show(self.label(), self.left_text())

    def validating(self) -> None:
        self.done = self.batches
        self.show(self.label(), "[dim]validating…[/]", draw=True)

    def epoch_finished(self, epoch: int, metrics: dict[str, float]) -> None:
        self.eta.finish_epoch()
        self.display.status = Text(status_text(epoch, metrics), style="dim")
        self.show(self.label(), self.left_text(), draw=True)

    def paused(self, run_id: str) -> None:
        self.eta.pause()
        self.show(self.label("bold yellow"), f"[bold yellow]paused — tiller resume {escape(terminal_text(run_id, single_line=True))}[/]", draw=True)

    def resumed(self) -> None:
        self.eta.resume()
        self.show(self.label(), self.left_text(), draw=True)

    def label(self, style: str = "bold") -> str:
        return f"[{style}]epoch {self.epoch}/{self.total_epochs}[/]"

    def left_text(self) -> str:
        epoch_left = self.eta.epoch_left(self.done, self.batches)
        run_left = self.eta.run_left(self.epoch, self.total_epochs, self.done, self.batches)
        return (f"[cyan]{clock_text(epoch_left)}[/] left in epoch  "
                f"[cyan]{clock_text(run_left)}[/] left in run")

    def show(self, description: str, left: str, draw: bool = False) -> None:
        """Update the bar; redraw now if ``draw``, else only if the last redraw is ``REFRESH_S`` old."""
        if self.task is None:
            return
        self.display.update(self.task, description=description, total=max(self.batches, 1),
                            completed=self.done, left=left)
        now = self.clock()
        if draw or now - self.last_drawn >= self.REFRESH_S:
            self.last_drawn = now
            self.display.refresh()
