"""The autopilot: every ``autopilot_every`` epochs, ask the advisor and apply the
valid suggestions that stay within the user's limits.

It runs in the trainer process, in a background thread with its own store
connection, so training never waits for Claude; what it accepts goes through
the live config file like any other edit (source ``llm``, the advice's change
id) and is applied at the first epoch boundary after the advisor answers. Its
settings are hot config keys, so the user can change its limits or turn it off
mid-run, and no advisor may change them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tiller.store import Store
from tiller.trainer.advisor.redact import redact
from tiller.trainer.advisor.service import AdviceRecord, apply_advice, ask
from tiller.trainer.advisor.types import AdvisorError, CheckedSuggestion
from tiller.trainer.steering.config import TrainConfig
from tiller.trainer.steering.live_config import live_config_path, read_live_file

LR_KEYS = ("learning_rate", "min_lr")


def within_limits(
    suggestions: Iterable[CheckedSuggestion], config: TrainConfig, changes_made: int
) -> tuple[list[CheckedSuggestion], list[tuple[CheckedSuggestion, str]]]:
    """The suggestions the autopilot may apply, and the others with the reason each is left out."""
    accepted, skipped = [], []
    budget = config.autopilot_max_changes - changes_made
    factor = config.autopilot_max_lr_factor
    for s in suggestions:
        if not s.ok:
            skipped.append((s, s.problem))
        elif s.parameter in LR_KEYS and not _within_factor(s.current_value, s.suggested_value, factor):
            skipped.append((s, f"{s.parameter} {s.current_value:g} -> {s.suggested_value:g} is beyond the "
                               f"x/÷{factor:g} limit of autopilot_max_lr_factor"))
        elif len(accepted) >= budget:
            skipped.append((s, f"the run's budget of {config.autopilot_max_changes} autopilot changes is used up"))
        else:
            accepted.append(s)
    return accepted, skipped


def _within_factor(old, new, factor: float) -> bool:
    if not old or not new:  # min_lr may be 0: any move off 0 is unbounded as a ratio
        return old == new
    ratio = new / old
    return 1 / factor <= ratio <= factor


def is_due(config: TrainConfig, epoch: int) -> bool:
    """A step after ``epoch``: on, a multiple of ``autopilot_every``, and not the last epoch."""
    return config.autopilot and epoch % config.autopilot_every == 0 and epoch < config.num_epochs


@dataclass
class AutopilotLog:
    """What the autopilot has done in this run, for ``state.json``."""

    steps: int = 0
    changes_made: int = 0
    last: str = ""


class Autopilot:
    def __init__(self, runs_dir: Path, run_id: str, event: Callable[[str, str, int], None]):
        self.runs_dir, self.run_id, self.event = runs_dir, run_id, event
        self.log = AutopilotLog()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._told_budget = False

    def after_epoch(self, epoch: int, config: TrainConfig) -> None:
        """Start a step if one is due and none is still waiting for the advisor."""
        if not is_due(config, epoch):
            return
        if config.autopilot_max_changes - self.log.changes_made <= 0:
            if not self._told_budget:  # once, not after every epoch
                self._note(f"after epoch {epoch}: not asking any more; the budget of "
                           f"{config.autopilot_max_changes} changes is used up", epoch=epoch)
                self._told_budget = True
            return
        self._told_budget = False
        if self._thread is not None and self._thread.is_alive():
            self.event("warning", f"Autopilot: the step of an earlier epoch is still waiting for the advisor; "
                                  f"no new step after epoch {epoch}.", epoch)
            return
        with self._lock:
            self.log.steps += 1
        self._thread = threading.Thread(target=self._step, args=(epoch, config), name="autopilot", daemon=True)
        self._thread.start()

    def settle(self, timeout: float) -> None:
        """Give a step in flight up to ``timeout`` seconds, so a quick advisor's change lands at once."""
        if self._thread is not None:
            self._thread.join(timeout)

    def describe(self, config: TrainConfig) -> dict:
        with self._lock:
            return {"enabled": config.autopilot, "every": config.autopilot_every,
                    "max_changes": config.autopilot_max_changes, "max_lr_factor": config.autopilot_max_lr_factor,
                    "advisor": config.autopilot_advisor, "steps": self.log.steps,
                    "changes_made": self.log.changes_made, "in_flight": bool(self._thread and self._thread.is_alive()),
                    "last": self.log.last}

    # ------------------------------------------------------------- the step

    def _step(self, epoch: int, config: TrainConfig) -> None:
        store = Store(self.runs_dir)  # this thread's own connection
        try:
            record = ask(store, self.run_id, asked_by="autopilot", offline=config.autopilot_advisor == "rules")
            with self._lock:
                accepted, skipped = within_limits(record.suggestions, config, self.log.changes_made)
            if accepted and self._turned_off_meanwhile(store):
                self._note(f"after epoch {epoch}: {record.advisor} answered (advice {record.id}), but the "
                           "autopilot was turned off meanwhile; nothing was sent", epoch=epoch)
                return
            if accepted:
                apply_advice(store, record, [s.number for s in accepted])
                with self._lock:
                    self.log.changes_made += len(accepted)
            self._report(epoch, record, accepted, skipped)
        except AdvisorError as exc:
            self._note(f"after epoch {epoch}: the advisor failed ({exc})", level="warning", epoch=epoch)
        except Exception as exc:  # the autopilot must never take the run down
            self._note(f"after epoch {epoch}: {type(exc).__name__}: {exc}; nothing was changed",
                       level="error", epoch=epoch)
        finally:
            store.close()

    def _turned_off_meanwhile(self, store: Store) -> bool:
        """The live file (an edit not applied yet) or the config in force says autopilot: false."""
        try:
            waiting = read_live_file(live_config_path(store.runs_dir, self.run_id)).values.get("autopilot")
        except Exception:  # unreadable now: the config in force decides
            waiting = None
        return waiting is False or store.current_config(self.run_id).get("autopilot") is False

    def _report(self, epoch: int, record: AdviceRecord, accepted, skipped) -> None:
        sent = ", ".join(f"#{s.number} {s.parameter} {s.current_value!r} → {s.suggested_value!r}" for s in accepted)
        left = "; ".join(f"#{s.number} {s.parameter} ({why})" for s, why in skipped)
        if not record.suggestions:
            text = f"after epoch {epoch}: {record.advisor} suggested nothing (advice {record.id})"
        else:
            text = (f"after epoch {epoch}: {record.advisor} (advice {record.id}) — "
                    f"{'sent ' + sent + ' for the next epoch boundary' if accepted else 'nothing sent'}"
                    f"{'; left out ' + left if left else ''}")
        self._note(text, epoch=epoch)

    def _note(self, text: str, level: str = "info", epoch: int | None = None) -> None:
        # What it notes lands in events, state.json and the checkpoint: never an echo of the key.
        text = redact(text)
        with self._lock:
            self.log.last = text
        try:
            self.event(level, f"Autopilot {text}.", epoch)
        except Exception:
            pass  # an event that cannot be written must not end the thread with a traceback
