"""``tiller suggest`` and ``tiller revert``: the advisor and the undo button, from a terminal.

An advisor's words, questions, reasons and refusals are anyone's text: everything printed
goes through ``terminal_text`` (or ``terminal_json``), so none can drive the terminal.
"""

from __future__ import annotations

import textwrap

from tiller.store import Store
from tiller.trainer.advisor import AdviceRecord, AdvisorError, apply_advice, ask, revert_version
from tiller.trainer.advisor.service import choose_advisor
from tiller.trainer.steering.safe_text import terminal_json, terminal_text


def cmd_suggest(args, store: Store, run_id: str, fail) -> None:
    advisor = choose_advisor(args.offline)
    if not args.json:
        print(f"asking {advisor.name} about {run_id} …", flush=True)
    try:
        record = ask(store, run_id, args.question or "", asked_by="cli", advisor=advisor)
    except AdvisorError as exc:
        fail(terminal_text(f"no advice: {exc}"), code=1)
    applied, apply_error = None, None
    if args.apply:
        try:
            applied = apply_advice(store, record) if record.valid else {}
        except AdvisorError as exc:
            apply_error = str(exc)
    if args.json:
        print(terminal_json({**record.to_dict(), "applied": applied, "apply_error": apply_error},
                            indent=2, default=str))
    else:
        print(terminal_text(advice_text(record)))
        print(terminal_text(apply_text(record, args.apply, applied, apply_error)))
    if apply_error:
        raise SystemExit(1)


def advice_text(record: AdviceRecord) -> str:
    lines = [f"advice {record.id} from {record.advisor}, after epoch {record.epoch}"]
    if record.question:
        lines.append(f"question: {record.question}")
    lines += ["", record.analysis.strip(), ""]
    if not record.suggestions:
        lines.append("no suggestions")
    for s in record.suggestions:
        status = "ok" if s.ok else f"refused: {s.problem}"
        lines.append(f"#{s.number}  {s.parameter}: {s.current_value!r} -> {s.suggested_value!r}  [{status}]")
        lines += [textwrap.indent(textwrap.fill(s.reason, 88), "    ")] if s.reason else []
        lines += [f"    note: {note}" for note in s.notes]
    return "\n".join(lines)


def apply_text(record: AdviceRecord, asked_to_apply: bool, applied, error) -> str:
    if error:
        return f"\nnot applied: {error}"
    if applied:
        sent = ", ".join(f"{k}={v!r}" for k, v in applied.items())
        return f"\nsent to {record.run_id} with source llm, change id {record.change_id(s.number for s in record.valid)}: " \
               f"{sent} (applies at the next epoch boundary)"
    if asked_to_apply:
        return "\nnothing to apply"
    if record.valid:
        return "\nto apply every valid suggestion, ask again with --apply"
    return ""


def cmd_revert(args, store: Store, run_id: str, fail) -> None:
    try:
        updates = revert_version(store, run_id, args.version, source="cli")
    except AdvisorError as exc:
        fail(terminal_text(f"not reverted: {exc}"), code=1)
    sent = ", ".join(f"{k}={v!r}" for k, v in updates.items())
    print(terminal_text(f"sent to {run_id}: {sent} (back to v{args.version - 1} at the next epoch boundary)"))
