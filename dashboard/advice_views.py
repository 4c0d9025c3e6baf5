"""The advisor panel's words and tables, decided without Streamlit.

An advice (``tiller.trainer.advisor.AdviceRecord``) is shown against what happened
since: which of its suggestions the run has applied (config versions carry the
change id ``<advice id>#<numbers>``), which are sent and waiting in the live
config file (by value: the file keeps one change note, the latest, however
many edits wait in it), and which the checks refused. Only a valid suggestion the run
does not already have can be ticked and applied: the others are listed apart,
with no box to tick, saying what became of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from tiller.dashboard.display import diff_text, local_time, md_escape, value_text
from tiller.dashboard.labels import short_label
from tiller.trainer.advisor.service import split_change_id
from tiller.trainer.steering.safe_text import safe_markdown as parsed_safe_markdown

OFFLINE_ADVISOR = "the offline rule-based advisor"
ASKED_FROM = {"user": "the dashboard", "cli": "the command line", "autopilot": "the autopilot"}
SUGGESTION_COLUMNS = ["apply", "#", "parameter", "current", "suggested", "reason", "status"]
SENT_MARK = "✓"
# How an ended run's status reads after "the run": a change sent before it ended was never applied.
ENDED_AS = {"finished": "finished", "failed": "failed", "stopped": "was stopped", "crashed": "crashed"}


# ------------------------------------------------------------------- who answers


def advisor_caption(has_key: bool, model: str, offline: bool) -> str:
    """Which advisor answers the next question (never the key itself)."""
    if not has_key:
        return f"Answered by {OFFLINE_ADVISOR} (no ANTHROPIC_API_KEY set)."
    if offline:
        return f"Answered by {OFFLINE_ADVISOR}: Offline rules is on, nothing leaves this machine."
    return (f"Answered by Claude ({md_escape(model)}): the run's config, metrics and your question are sent "
            "to the Anthropic API. Turn on Offline rules to keep them on this machine.")


def advice_heading(record: Any, tz_name: str | None = None) -> str:
    """One Markdown line: who answered, when, at which epoch, who asked."""
    asked_from = ASKED_FROM.get(record.asked_by, record.asked_by)
    return (f"**{md_escape(record.advisor)}** answered after epoch {record.epoch} · asked from "
            f"{md_escape(asked_from)} · {local_time(record.time, tz_name)} · advice {md_escape(record.id)}")


HEADING_SHIFT = 2  # a report's "# title" shows as a third-level heading inside the page


def safe_markdown(text: str) -> str:
    """Advisor text (or a report that embeds it) made safe and fit to render on the page.

    Parsed, not pattern-matched (``tiller.trainer.steering.safe_text``): images, raw HTML, autolinks and
    links that are not http(s) come back as plain text, so nothing the text names is
    loaded by opening the page and no ``data:``/``javascript:`` link can be clicked.
    Headings move down two levels, so a report's title does not outshout the page's own.
    """
    return parsed_safe_markdown(text, heading_shift=HEADING_SHIFT)


# -------------------------------------------------------------------- suggestions


@dataclass(frozen=True)
class SuggestionRow:
    number: int
    parameter: str
    current: str  # when the advice was given
    suggested: str
    reason: str
    status: str
    selectable: bool  # valid and not in force: it can be ticked and sent
    sent: bool = False  # sent to the run (waiting or applied)


def change_ids(versions: pd.DataFrame) -> list[tuple[int, int, str]]:
    """(version, epoch, change id) of every config version that names its request."""
    if versions.empty or "change_id" not in versions.columns:
        return []
    return [(int(v), int(e), str(c)) for v, e, c in zip(versions["version"], versions["epoch"], versions["change_id"])
            if isinstance(c, str) and c]


def numbers_of(change_id: str, advice_id: str) -> set[int]:
    """The suggestion numbers ``change_id`` (``adv_…#1,3``) applies from ``advice_id``."""
    head, numbers = split_change_id(change_id)
    return set(numbers) if head == advice_id else set()


def applied_in(versions: pd.DataFrame, advice_id: str) -> dict[int, tuple[int, int]]:
    """Suggestion number -> (version, epoch) of the config version that applied it (the latest)."""
    applied: dict[int, tuple[int, int]] = {}
    for version, epoch, change_id in change_ids(versions):
        for number in numbers_of(change_id, advice_id):
            applied[number] = (version, epoch)
    return applied


def last_change(versions: pd.DataFrame, parameter: str) -> tuple[int, int, str] | None:
    """(version, epoch, change id) of the latest config version that changed ``parameter``."""
    for row in reversed(versions.to_dict("records")):
        if parameter in (row.get("diff") or {}):
            change_id = row.get("change_id")
            return int(row["version"]), int(row["epoch"]), change_id if isinstance(change_id, str) else ""
    return None


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b)  # 1 is not True, 1.0 is not 1: the checks tell them apart


def pending_status(run_status: str = "running", epochs_done: int | None = None, *, resumable: bool = True) -> str:
    """What a sent suggestion waiting in the live config file reads, by the run's status.

    ``resumable``: whether ``tiller resume`` can continue the run (a run of a user's own loop it cannot)."""
    if run_status == "finished":
        return "✖ sent, never applied: the run finished first"
    if run_status in ENDED_AS and not resumable:
        return f"✖ sent, never applied: the run {ENDED_AS[run_status]}, and a run of your own loop is not resumed"
    if run_status in ENDED_AS:
        return f"⏳ sent, not applied yet: the run {ENDED_AS[run_status]}; `tiller resume` applies it"
    if epochs_done is None:
        return "⏳ sent, pending: applies at the next epoch boundary"
    return f"⏳ sent, pending: applies once epoch {epochs_done + 1} finishes"


def suggestion_rows(
    record: Any,
    config_now: Mapping[str, Any],
    versions: pd.DataFrame,
    waiting: Mapping[str, Any] | None = None,
    *,
    run_status: str = "running",
    epochs_done: int | None = None,
    resumable: bool = True,
) -> list[SuggestionRow]:
    """Each suggestion of ``record`` with its status now and whether it may be ticked.

    ``config_now`` is the config in force, ``versions`` its history; ``waiting`` the
    values the live config file asks for that the run has not applied yet.
    ``run_status``, ``epochs_done`` and ``resumable`` say when a waiting suggestion applies.
    """
    waiting = waiting or {}
    applied = applied_in(versions, record.id)
    rows = []
    for s in record.suggestions:
        in_force = s.parameter in config_now and _same(config_now[s.parameter], s.suggested_value)
        change = last_change(versions, s.parameter)
        selectable = sent = False
        if not s.ok:
            status = f"⛔ refused: {s.problem}"
        elif in_force and change and split_change_id(change[2])[0] == record.id:
            # Sent alone or with others of this advice: the version records the last sending's numbers.
            status, sent = f"✅ applied as v{change[0]}, in force from epoch {change[1]}", True
        elif s.parameter in waiting and _same(waiting[s.parameter], s.suggested_value):
            status, sent = pending_status(run_status, epochs_done, resumable=resumable), True
        elif in_force:
            status = "already the run's value: nothing to send"
        else:
            selectable = True
            if s.number in applied:
                status = f"applied as v{applied[s.number][0]}, changed since: can be sent again"
            else:
                status = "valid"
            now = config_now.get(s.parameter)
            if s.parameter in config_now and now != s.current_value:
                status += f" · the run has {value_text(now)} now"
            status += "".join(f" · note: {note}" for note in s.notes)
        rows.append(SuggestionRow(
            number=s.number, parameter=s.parameter, current=value_text(s.current_value),
            suggested=value_text(s.suggested_value), reason=s.reason, status=status, selectable=selectable,
            sent=sent,
        ))
    return rows


def _table(first: str, marks: list[Any], rows: list[SuggestionRow]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            first: marks,
            "#": [r.number for r in rows],
            "parameter": [r.parameter for r in rows],
            "current": [r.current for r in rows],
            "suggested": [r.suggested for r in rows],
            "reason": [r.reason for r in rows],
            "status": [r.status for r in rows],
        },
        columns=[first, *SUGGESTION_COLUMNS[1:]],
    )


def suggestions_table(rows: Iterable[SuggestionRow]) -> pd.DataFrame:
    """The editor's table of the suggestions that can be sent: an unticked ``apply`` box each."""
    rows = [r for r in rows if r.selectable]
    return _table("apply", [False] * len(rows), rows)


def status_table(rows: Iterable[SuggestionRow]) -> pd.DataFrame:
    """A read-only table of ``rows`` (those that cannot be ticked: sent, applied, refused, already
    in force; or all of an ended run's): ``sent`` is ✓ for those that went to the run (text, not
    a checkbox that looks as if it could be ticked), ``status`` says what became of each."""
    rows = list(rows)
    return _table("sent", [SENT_MARK if r.sent else "" for r in rows], rows)


def ticked(rows: list[SuggestionRow], edited: pd.DataFrame) -> list[int]:
    """The numbers ticked in the editor's ``edited`` table that can be sent (in ``rows``' order)."""
    ticks = {int(n) for n, tick in zip(edited["#"], edited["apply"]) if bool(tick)}
    return [r.number for r in rows if r.number in ticks and r.selectable]


def sent_text(record: Any, numbers: Iterable[int], updates: Mapping[str, Any]) -> str:
    """What the success message says: the change id and each key's new value."""
    pairs = {s.parameter: [s.current_value, updates[s.parameter]]
             for s in record.suggestions if s.number in set(numbers) and s.parameter in updates}
    return f"{diff_text(pairs)} as change {record.change_id(numbers)} (source llm)"


# ------------------------------------------------------------------ earlier advice


def earlier_advice_table(records: Iterable[Any], versions: pd.DataFrame, tz_name: str | None = None) -> pd.DataFrame:
    """A compact line per advice: when, who, the question, and what became of each suggestion."""
    lines = []
    for record in records:
        applied = applied_in(versions, record.id)
        parts = []
        for s in record.suggestions:
            fate = "refused" if not s.ok else (f"applied as v{applied[s.number][0]}" if s.number in applied
                                               else "not applied")
            parts.append(f"#{s.number} {s.parameter} → {value_text(s.suggested_value)} ({fate})")
        lines.append({
            "asked": local_time(record.time, tz_name),
            "after epoch": record.epoch,
            "advisor": record.advisor,
            "asked from": ASKED_FROM.get(record.asked_by, record.asked_by),
            "question": record.question,
            "suggestions": "; ".join(parts) or "none",
            "advice": record.id,
        })
    return pd.DataFrame(lines, columns=["asked", "after epoch", "advisor", "asked from", "question", "suggestions",
                                        "advice"])


# ----------------------------------------------------------------------- autopilot


def autopilot_text(config: Mapping[str, Any], progress: Mapping[str, Any] | None = None) -> str:
    """The status line of an autopilot that is on, with what it has done when the trainer says."""
    every = int(config.get("autopilot_every", 1))
    who = ("the offline rules" if config.get("autopilot_advisor") == "rules"
           else "the advisor (Claude if the trainer has `ANTHROPIC_API_KEY`, else the offline rules)")
    text = (f"**Autopilot on**: asks {who} {'every epoch' if every == 1 else f'every {every} epochs'}, "
            f"at most {config.get('autopilot_max_changes')} changes in the run, "
            f"lr ×/÷{float(config.get('autopilot_max_lr_factor', 1.0)):g} per step.")
    if progress:
        steps, made = progress.get("steps"), progress.get("changes_made")
        if steps is not None and made is not None:
            text += f" So far: {steps} step{'s' if steps != 1 else ''}, {made} change{'s' if made != 1 else ''}."
        if progress.get("in_flight"):
            text += " A step is waiting for the advisor."
    return text


# -------------------------------------------------------------------------- revert


def revert_choices(versions: pd.DataFrame) -> list[int]:
    """Versions that can be reverted (all but the first), newest first."""
    return sorted((int(v) for v in versions["version"] if int(v) >= 2), reverse=True) if not versions.empty else []


def version_label(versions: pd.DataFrame, version: int, width: int = 90) -> str:
    row = versions[versions["version"] == version].iloc[0]
    text = f"v{version} · from epoch {int(row['epoch'])} · {row['source']}: {diff_text(row['diff']) or 'no change'}"
    return short_label(text, width)


def revert_table(updates: Mapping[str, Any], config_now: Mapping[str, Any]) -> pd.DataFrame:
    """What a revert sends: each key, its value now, the value it goes back to."""
    return pd.DataFrame(
        {
            "key": list(updates),
            "now": [value_text(config_now.get(k)) for k in updates],
            "back to": [value_text(v) for v in updates.values()],
        }
    )


# ------------------------------------------------------------------------- reports


def report_label(report: Mapping[str, Any], tz_name: str | None = None) -> str:
    return (f"v{int(report['version'])} · in force from epoch {int(report['epoch'])} · "
            f"written {local_time(report['time'], tz_name)}")


def report_filename(report: Mapping[str, Any], run_id: str) -> str:
    """The report's own file name, prefixed with the run so downloads from several runs differ."""
    name = Path(str(report.get("path") or "")).name or f"v{int(report['version']):03d}.md"
    if not name.endswith(".md"):
        name += ".md"
    return f"{run_id}_{name}"
