"""The adjustment report, after seed 003: one Markdown file per applied config change.

Sections follow the seed's report: reason; each change with its original and
new value and the kind of change; the advisor's analysis (when the change came
from advice); the metrics at that point; the config before and after; a
summary. Everything is read back from the store, so the report describes what
the trainer really applied, not what was asked for.

Reasons, names, keys and the advisor's words are anyone's text, and the report is
opened in Markdown viewers: each is escaped (``markdown_inline``, ``markdown_code``)
or, for the analysis, parsed and written back inert (``safe_markdown``), so opening a
report loads nothing and runs nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

from tiller.store import Store
from tiller.trainer.advisor.service import load_advice, split_change_id
from tiller.trainer.steering.live_config import write_atomic
from tiller.trainer.steering.safe_text import markdown_code, markdown_code_block, markdown_inline, safe_markdown

REPORTS_DIRNAME = "reports"
METRIC_ORDER = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "train/grad_norm",
                "epoch_seconds", "samples_per_sec")


def change_kind(old: Any, new: Any) -> str:
    """Seed 003's "change type": increase / decrease, or what fits a non-number."""
    if isinstance(old, bool) or isinstance(new, bool):
        return "enabled" if new else "disabled"
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return "increase" if new > old else "decrease"
    if isinstance(old, dict) or isinstance(new, dict):
        return "edited"
    return "switched"


def report_id_for(run_id: str, version: int) -> str:
    return f"{run_id}_v{version:03d}"


def write_change_report(store: Store, run_id: str, version: int, run_dir: Path) -> Path:
    """Render the report of config ``version``, save it under ``run_dir/reports/`` and in the store."""
    versions = store.config_versions(run_id)
    row = versions[versions["version"] == version].iloc[0]
    before = versions[versions["version"] == version - 1].iloc[0]["config"]
    epoch = int(row["epoch"])
    latest = store.metrics([run_id], epochs=[epoch - 1])  # the epoch before the change, not the whole run
    measured = {(f"{s}/{n}" if s else n): v for s, n, v in zip(latest["split"], latest["name"], latest["value"])}
    advice_id, numbers = split_change_id(row.get("change_id") or "")
    advice = load_advice(store, advice_id) if advice_id else None
    report_id = report_id_for(run_id, version)
    markdown = render_report(
        report_id=report_id, run_id=run_id, version=version, epoch=epoch, source=str(row["source"]),
        reason=str(row["reason"] or ""), change_id=str(row.get("change_id") or ""), diff=row["diff"],
        before=before, after=row["config"], metrics=measured, advice=advice, numbers=numbers,
    )
    path = run_dir / REPORTS_DIRNAME / f"v{version:03d}.md"
    write_atomic(path, markdown)
    store.record_report(run_id, report_id=report_id, version=version, epoch=epoch, markdown=markdown, path=str(path))
    return path


def render_report(
    *,
    report_id: str,
    run_id: str,
    version: int,
    epoch: int,
    source: str,
    reason: str,
    change_id: str,
    diff: Mapping[str, list[Any]],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    metrics: Mapping[str, float],
    advice=None,
    numbers: list[int] | None = None,
    generated: float | None = None,
) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(generated or time.time()))
    lines = [
        "# Training adjustment report",
        "",
        f"**Generated**: {stamp}  ",
        f"**Report ID**: {markdown_inline(report_id)}  ",
        f"**Run**: {markdown_inline(run_id)}  ",
        f"**Config version**: v{version} (from v{version - 1}), in force from epoch {epoch}  ",
        f"**Source**: {markdown_inline(source)}" + (f"  \n**Change ID**: {markdown_inline(change_id)}"
                                                   if change_id else ""),
        "",
        "## Reason",
        "",
        markdown_inline(reason) if reason else "(none given)",
        "",
        "## Changes",
    ]
    for key, (old, new) in diff.items():
        lines += ["", f"### {_cell(key)}", f"- **Original**: {markdown_code(_value(old))}",
                  f"- **New**: {markdown_code(_value(new))}", f"- **Change type**: {change_kind(old, new)}"]
    if advice is not None:
        lines += ["", *_advice_section(advice, numbers or [])]
    lines += ["", f"## Metrics at this point (epoch {epoch - 1})", ""]
    if metrics:
        lines += ["| Metric | Value |", "|---|---|"]
        ordered = [k for k in METRIC_ORDER if k in metrics] + sorted(k for k in metrics if k not in METRIC_ORDER)
        lines += [f"| {_cell(k)} | {metrics[k]:.6g} |" for k in ordered]  # a loop of one's own names them
    else:
        lines.append("No epoch had finished yet.")
    lines += [
        "", "## Config comparison", "", "### Before", *markdown_code_block(_json(before), "json"),
        "", "### After", *markdown_code_block(_json(after), "json"),
        "", "## Summary", "",
        f"- This adjustment changed **{len(diff)}** parameter{'s' if len(diff) != 1 else ''}.",
        f"- It was based on {_basis(source, advice)}.",
        f"- Report generated {stamp}.",
        "", "---", "*Written by Tiller when the trainer applied the change.*", "",
    ]
    return "\n".join(lines)


def _advice_section(advice, numbers: list[int]) -> list[str]:
    asked = f"asked after epoch {advice.epoch} by {markdown_inline(advice.asked_by)}"
    lines = ["## Advisor analysis", "",
             f"**Advisor**: {markdown_inline(advice.advisor)} ({asked}, advice {markdown_inline(advice.id)})  "]
    if advice.question:
        lines.append(f"**Question**: {markdown_inline(advice.question)}  ")
    # The report's own headings are levels 1-3: the analysis's go below them.
    analysis = safe_markdown(advice.analysis.strip(), heading_shift=3)
    lines += ["", "**Analysis**:", "", analysis or "(no analysis given)", "",
              "**Suggestions**:", "", "| # | Parameter | Suggested | Applied | Reason |", "|---|---|---|---|---|"]
    for s in advice.suggestions:
        applied = "yes" if s.number in numbers else ("refused: " + _cell(s.problem) if s.problem else "not chosen")
        lines.append(f"| {s.number} | {_cell(s.parameter)} | {_code_cell(_value(s.suggested_value))} | "
                     f"{applied} | {_cell(s.reason)} |")
    return lines


def _basis(source: str, advice) -> str:
    if advice is not None:
        return f"the analysis of {markdown_inline(advice.advisor)}"
    return {"user": "an edit in the dashboard", "cli": "a `tiller` command", "file": "an edit of the config file",
            "llm": "an advisor's suggestion"}.get(source, markdown_inline(source))


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _json(config: Mapping[str, Any]) -> str:
    return json.dumps(dict(config), indent=2, ensure_ascii=False)


def _cell(text: str) -> str:
    """Text made safe for one Markdown table cell (or a heading): one line, escaped."""
    return markdown_inline(" ".join(str(text).split()))


def _code_cell(text: str) -> str:
    """Code in a table cell: GFM splits cells at a pipe even inside code."""
    return markdown_code(" ".join(text.split())).replace("|", "\\|")
