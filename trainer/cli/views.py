"""What ``tiller runs`` and ``tiller show`` print, as text or as JSON-ready data."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tiller.store import Store
from tiller.trainer.steering.live_config import pending_edit
from tiller.trainer.steering.safe_text import terminal_json, terminal_text


# Each status's colour in the terminal's runs table; finished runs stay in the default colour.
STATUS_STYLES = {"running": "green", "paused": "yellow", "failed": "red", "crashed": "red", "stopped": "bright_black"}
NAME_MAX, NAME_COMFORT = 40, 20  # a name's widest in the terminal's table; narrower, the model column goes
RICH_HEADERS = {"BEST VAL ACC": "BEST ACC"}  # the terminal's table is tight: accuracy is always validation's
NUMERIC_COLUMNS = ("EPOCH", "BEST ACC")
COLUMN_STYLES = {"ID": "cyan", "UPDATED": "dim"}
NO_RUNS = "No runs yet. Start one with `tiller demo` or `tiller train --config CONFIG.json`."


def local_time(seconds: float | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """``seconds`` since the epoch in the user's time zone; empty when unknown."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    return datetime.fromtimestamp(seconds).astimezone().strftime(fmt)


def progress(row: dict[str, Any]) -> str:
    done = 0 if pd.isna(row.get("epoch")) else int(row["epoch"])
    total = "?" if pd.isna(row.get("num_epochs")) else int(row["num_epochs"])
    return f"{done}/{total}"


def _clean(value: Any) -> Any:
    """NaN and numpy scalars to what json can write."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def json_text(value: Any) -> str:
    """``--json`` output: the same data, with control characters escaped (json leaves C1 and bidi
    controls raw, and a terminal acts on them)."""
    return terminal_json(value, indent=2, default=str)


def runs_records(runs: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in runs.to_dict("records")]


def runs_rows(runs: pd.DataFrame) -> list[dict[str, str]]:
    """The cells of ``tiller runs``, newest run first (the store's order), as text a terminal
    only shows: names are anyone's text, and may hold escape sequences or line breaks."""
    return [
        {key: terminal_text(cell, single_line=True) for key, cell in row.items()}
        for row in _runs_cells(runs)
    ]


def _runs_cells(runs: pd.DataFrame) -> list[dict[str, str]]:
    return [
        {
            "ID": r["id"],
            "NAME": r["name"] if r["name"] != r["id"] else "",
            "STATUS": r["status"],
            "MODEL": r["model"],
            "EPOCH": progress(r),
            "BEST VAL ACC": "" if pd.isna(r["best_val_accuracy"]) else f"{r['best_val_accuracy']:.4f}",
            "UPDATED": local_time(r["updated"], "%Y-%m-%d %H:%M"),  # to the minute: a list, not a log
        }
        for r in runs.to_dict("records")
    ]


def runs_table(runs: pd.DataFrame) -> str:
    """Plain aligned text, for pipes, files and scripts."""
    if runs.empty:
        return NO_RUNS
    return pd.DataFrame(runs_rows(runs)).to_string(index=False)


def runs_rich_table(runs: pd.DataFrame, width: int = 120) -> Table:
    """The terminal's table, ``width`` wide at most: a colour per status; long names cut with an ellipsis."""
    rows = [{RICH_HEADERS.get(key, key): value for key, value in row.items()} for row in runs_rows(runs)]
    widths = column_widths(rows, width)
    # Two spaces between columns (a cell's right padding and the box's blank divider).
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", padding=(0, 1, 0, 0))
    for key, column_width in widths.items():
        table.add_column(key, no_wrap=True, overflow="ellipsis", width=column_width,
                         justify="right" if key in NUMERIC_COLUMNS else "left", style=COLUMN_STYLES.get(key, ""))
    for row in rows:
        # Text, not markup: a name may hold brackets.
        cells = {key: Text(row[key]) for key in widths}
        cells["STATUS"].stylize(STATUS_STYLES.get(row["STATUS"], ""))
        table.add_row(*cells.values())
    return table


def column_widths(rows: list[dict[str, str]], width: int) -> dict[str, int]:
    """Each column as wide as its widest cell, in this order; in a narrow terminal the name gives way.

    When even so the name would be cut short, the model column goes: the id starts with the model's name.
    """
    widths = {key: max(len(key), *(len(row[key]) for row in rows)) for key in rows[0]}
    widths["NAME"] = min(widths["NAME"], NAME_MAX)
    if room_for_name(widths, width) < NAME_COMFORT:
        del widths["MODEL"]
    widths["NAME"] = max(min(widths["NAME"], room_for_name(widths, width)), len("NAME"))
    return widths


def room_for_name(widths: dict[str, int], width: int) -> int:
    return width - (2 * len(widths) - 1) - sum(w for key, w in widths.items() if key != "NAME")


def print_runs(runs: pd.DataFrame, console: Console | None = None) -> None:
    """``tiller runs``: the rich table in a terminal, plain aligned text anywhere else."""
    console = console or Console()
    if runs.empty or not console.is_terminal:
        console.file.write(runs_table(runs) + "\n")
        return
    console.print(runs_rich_table(runs, console.width))


def run_details(store: Store, run_id: str, config_path: Path) -> dict[str, Any]:
    """Everything about one run: the record, config in force, pending edit, history, metrics, events."""
    versions = store.config_versions(run_id)
    return {
        "run": {k: _clean(v) for k, v in store.run(run_id).items()},
        "config": store.current_config(run_id),
        "live_config_file": str(config_path),
        "pending_edit": pending_edit(config_path, store.current_config(run_id)),
        "config_versions": [
            {k: _clean(v) for k, v in row.items()} for row in versions.drop(columns=["run_id"]).to_dict("records")
        ],
        "metrics": runs_records(store.metrics([run_id]).drop(columns=["run_id"])),
        "events": runs_records(store.events(run_id)),
        "advice": [{"id": a["id"], "epoch": a["epoch"], "advisor": a["advisor"], "asked_by": a["asked_by"],
                    "question": a["question"], "suggestions": len(a["suggestions"])}
                   for a in store.advice(run_id).to_dict("records")],
        "reports": [{"version": r["version"], "epoch": r["epoch"], "path": r["path"]}
                    for r in store.reports(run_id).to_dict("records")],
    }


def run_text(details: dict[str, Any]) -> str:
    """``tiller show``: the run's record, config, history, advice, reports, metrics and events,
    as text a terminal only shows (names, reasons and messages are anyone's text)."""
    return terminal_text(_run_lines(details))


def _run_lines(details: dict[str, Any]) -> str:
    run = details["run"]
    lines = [
        f"{run['id']}  [{run['status']}]  {run['model']} on {run['dataset']}",
        f"  name      {terminal_text(run['name'], single_line=True)}",
        f"  created   {local_time(run['created'])}   updated {local_time(run['updated'])}",
        f"  progress  epoch {progress(run)}   best val accuracy {run.get('best_val_accuracy') or '-'}",
        f"  process   pid {run['pid']} on {run['host']}",
        f"  config    {details['live_config_file']}",
    ]
    if run.get("hot_keys") is not None:  # a user's own loop: only these may change mid-run
        lines.append(f"  steers    {', '.join(run['hot_keys']) or 'no key'} (every other key is fixed for this run)")
    if run.get("error"):
        lines += ["", "Error:", run["error"].rstrip()]
    lines += ["", "Config in force:"] + [f"  {k} = {json.dumps(v, ensure_ascii=False)}" for k, v in details["config"].items()]
    if details["pending_edit"]:
        lines += ["", f"Pending edit (applies at the next boundary): {json.dumps(details['pending_edit'], ensure_ascii=False)}"]
    lines += ["", "Config versions:"]
    for v in details["config_versions"]:
        diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in v["diff"].items()) or "initial"
        reason = f" - {v['reason']}" if v["reason"] else ""
        lines.append(f"  v{v['version']} epoch {v['epoch']} [{v['source']}] {diff}{reason}")
    if details["advice"]:
        lines += ["", "Advice (newest first; tiller suggest RUN asks again):"]
        lines += [f"  {a['id']} after epoch {a['epoch']} from {a['advisor']} ({a['asked_by']}): "
                  f"{a['suggestions']} suggestion(s)" for a in details["advice"]]
    if details["reports"]:
        lines += ["", "Reports of applied changes:"] + [f"  v{r['version']}  {r['path']}" for r in details["reports"]]
    lines += ["", "Metrics per epoch:", metrics_text(details["metrics"])]
    lines += ["", "Events (newest first):"]
    lines += [f"  {local_time(e['time'])} {e['level']:7} {e['message']}" for e in details["events"]] or ["  none"]
    return "\n".join(lines)


def metrics_text(records: list[dict[str, Any]]) -> str:
    if not records:
        return "  none yet"
    df = pd.DataFrame(records)
    df["metric"] = [f"{s}/{n}" if s else n for s, n in zip(df["split"], df["name"])]
    wide = df.pivot_table(index="epoch", columns="metric", values="value", sort=False)
    return wide.to_string(float_format=lambda v: f"{v:.4g}")


def keys_table(rows: list[dict[str, Any]]) -> str:
    table = pd.DataFrame(rows)
    table["hot"] = table["hot"].map({True: "yes", False: "no"})
    return table.rename(columns=str.upper).to_string(index=False)
