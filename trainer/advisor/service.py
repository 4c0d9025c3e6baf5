"""Asking an advisor about a run, and sending what the user accepts to the run.

The same three steps serve the dashboard, ``tiller suggest`` and the autopilot:

1. ``ask``: build the run's context, ask Claude (or the offline rules), check
   every suggestion with the trainer's schema, keep the advice in the store;
2. ``apply_advice``: write the chosen valid suggestions to the live config
   with source ``llm`` and change id ``<advice id>#<numbers>``;
3. the trainer applies them at its next epoch boundary and writes a report.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Protocol

from tiller.store import LIVE_STATUSES, Store
from tiller.trainer.advisor.checks import check_suggestions, combined_problems
from tiller.trainer.advisor.context import RunContext, build_context
from tiller.trainer.advisor.llm import ClaudeAdvisor, has_key
from tiller.trainer.advisor.rules import RuleAdvisor
from tiller.trainer.advisor.types import Advice, AdvisorError, CheckedSuggestion
from tiller.trainer.steering.live_config import live_config_path, request_change

ASKERS = ("user", "cli", "autopilot")


class Advisor(Protocol):
    name: str

    def advise(self, ctx: RunContext) -> Advice: ...


def choose_advisor(offline: bool = False) -> Advisor:
    """Claude when a key is set and ``offline`` is not asked for, else the offline rules."""
    return RuleAdvisor() if offline or not has_key() else ClaudeAdvisor()


@dataclass(frozen=True)
class AdviceRecord:
    """An advice as stored: who answered, what, and each suggestion checked."""

    id: str
    run_id: str
    epoch: int  # epochs done when asked
    advisor: str
    asked_by: str
    question: str
    analysis: str
    suggestions: list[CheckedSuggestion]
    time: float = 0.0

    @property
    def valid(self) -> list[CheckedSuggestion]:
        return [s for s in self.suggestions if s.ok]

    def change_id(self, numbers: Iterable[int]) -> str:
        return f"{self.id}#{','.join(str(n) for n in sorted(numbers))}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "epoch": self.epoch, "advisor": self.advisor,
                "asked_by": self.asked_by, "question": self.question, "analysis": self.analysis,
                "suggestions": [s.to_dict() for s in self.suggestions], "time": self.time}

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "AdviceRecord":
        return cls(id=row["id"], run_id=row["run_id"], epoch=int(row["epoch"]), advisor=row["advisor"],
                   asked_by=row["asked_by"], question=row["question"] or "", analysis=row["analysis"] or "",
                   suggestions=[CheckedSuggestion.from_dict(s) for s in row["suggestions"]],
                   time=float(row["time"]))


def new_advice_id() -> str:
    return f"adv_{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(2)}"


def split_change_id(change_id: str) -> tuple[str, list[int]]:
    """``"adv_…#1,3"`` -> ``("adv_…", [1, 3])``; anything else -> ``("", [])``."""
    advice_id, _, numbers = (change_id or "").partition("#")
    if not advice_id.startswith("adv_"):
        return "", []
    return advice_id, [int(n) for n in numbers.split(",") if n.strip().isdigit()]


# ------------------------------------------------------------------ asking


def ask(
    store: Store,
    run_id: str,
    question: str = "",
    *,
    offline: bool = False,
    asked_by: str = "user",
    advisor: Advisor | None = None,
) -> AdviceRecord:
    """Ask about ``run_id``; the checked advice is stored and returned. ``AdvisorError`` on failure."""
    if asked_by not in ASKERS:
        raise ValueError(f"asked_by must be one of {ASKERS}, not {asked_by!r}")
    ctx = build_context(store, run_id, question)
    if not ctx.history:
        raise AdvisorError("the run has not finished an epoch yet; ask once its first epoch is logged")
    advisor = advisor or choose_advisor(offline)
    advice = advisor.advise(ctx)
    record = AdviceRecord(
        id=new_advice_id(), run_id=run_id, epoch=ctx.epochs_done, advisor=advice.advisor, asked_by=asked_by,
        question=ctx.question, analysis=advice.analysis,
        suggestions=check_suggestions(advice.suggestions, ctx.config, ctx.epochs_done, ctx.hot_keys),
        time=time.time(),
    )
    store.record_advice(run_id, advice_id=record.id, epoch=record.epoch, advisor=record.advisor,
                        asked_by=asked_by, question=record.question, analysis=record.analysis,
                        suggestions=[s.to_dict() for s in record.suggestions])
    return record


def load_advice(store: Store, advice_id: str) -> AdviceRecord | None:
    row = store.advice_item(advice_id)
    return AdviceRecord.from_row(row) if row else None


def run_advice(store: Store, run_id: str, limit: int | None = None) -> list[AdviceRecord]:
    """The run's advice, newest first."""
    return [AdviceRecord.from_row(row) for row in store.advice(run_id, limit).to_dict("records")]


# ---------------------------------------------------------------- applying


def live_epochs_done(store: Store, run_id: str) -> int:
    """The epochs ``run_id`` has logged; ``AdvisorError`` unless it is running or paused."""
    run = store.run(run_id)
    if run["status"] not in LIVE_STATUSES:
        raise AdvisorError(f"the run is {run['status']}; only a running or paused run can be changed")
    epoch = run["epoch"]
    return 0 if epoch is None or epoch != epoch else int(epoch)  # NaN before the first epoch


def apply_advice(store: Store, record: AdviceRecord, numbers: Iterable[int] | None = None) -> dict[str, Any]:
    """Send suggestions ``numbers`` (default: every valid one) to the run; returns what was sent.

    Refuses, changing nothing, when the run has ended, when a chosen suggestion
    was refused by the checks, or when the chosen changes clash together.
    """
    chosen_numbers = sorted(set(numbers)) if numbers is not None else [s.number for s in record.valid]
    by_number = {s.number: s for s in record.suggestions}
    unknown = [n for n in chosen_numbers if n not in by_number]
    if unknown:
        raise AdvisorError(f"advice {record.id} has no suggestion {', '.join(map(str, unknown))}")
    chosen = [by_number[n] for n in chosen_numbers]
    refused = [f"#{s.number} {s.problem}" for s in chosen if not s.ok]
    if refused:
        raise AdvisorError("cannot apply refused suggestions: " + "; ".join(refused))
    if not chosen:
        raise AdvisorError("no valid suggestion to apply")
    epochs_done = live_epochs_done(store, record.run_id)
    config = store.current_config(record.run_id)
    updates = {s.parameter: s.suggested_value for s in chosen}
    # Checked again against the run as it is now: advice is kept, and may be applied long after it was given.
    problems = combined_problems(config, updates, epochs_done, store.run_hot_keys(record.run_id))
    if problems:
        raise AdvisorError("the run would refuse these changes: " + "; ".join(problems))
    reason = ("autopilot: " if record.asked_by == "autopilot" else "") + \
        f"{record.advisor} suggestion{'s' if len(chosen) > 1 else ''} " \
        f"{', '.join('#' + str(s.number) for s in chosen)} ({record.id})"
    request_change(live_config_path(store.runs_dir, record.run_id), updates, source="llm", reason=reason,
                   change_id=record.change_id(chosen_numbers), fallback=config)
    return updates


def revert_updates(store: Store, run_id: str, version: int) -> dict[str, Any]:
    """The changes that take the run back to the config before ``version``."""
    versions = store.config_versions(run_id)
    numbers = [int(v) for v in versions["version"]]
    if version not in numbers:
        raise AdvisorError(f"run {run_id} has no config version {version}")
    if version == numbers[0]:
        raise AdvisorError(f"v{version} is the run's first config; there is nothing before it to go back to")
    target = versions[versions["version"] == version - 1].iloc[0]["config"]
    current = store.current_config(run_id)
    updates = {k: v for k, v in target.items() if current.get(k) != v}
    if not updates:
        raise AdvisorError(f"the run's config already equals v{version - 1}")
    return updates


def revert_version(store: Store, run_id: str, version: int, *, source: str = "user") -> dict[str, Any]:
    """Ask the run to go back to the config before ``version``; returns what was sent."""
    epochs_done = live_epochs_done(store, run_id)
    updates = revert_updates(store, run_id, version)
    config = store.current_config(run_id)
    problems = combined_problems(config, updates, epochs_done, store.run_hot_keys(run_id))
    if problems:
        raise AdvisorError(f"cannot revert v{version}: " + "; ".join(problems))
    request_change(live_config_path(store.runs_dir, run_id), updates, source=source,
                   reason=f"revert of v{version}: back to v{version - 1}", change_id=f"revert:v{version}",
                   fallback=config)
    return updates
