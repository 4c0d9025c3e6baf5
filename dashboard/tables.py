"""Store DataFrames -> the tables the pages show. Plain pandas, testable alone.

Config values are shown as JSON text: one column then holds numbers and
strings alike, and reads the way users type values in the live config file.
"""

from __future__ import annotations

from typing import Any, Collection, Mapping

import pandas as pd

from tiller.dashboard.display import (
    diff_text, epochs_done, local_time, md_escape, progress_text, status_label, value_text,
)
from tiller.trainer.steering.config import describe_keys

ABSENT = "(not in this run's config)"
NBSP, NB_HYPHEN = "\u00a0", "\u2011"
LEVEL_ICONS = {"info": "ℹ️ info", "warning": "⚠️ warning", "error": "🔴 error"}


def runs_table(runs: pd.DataFrame, tz_name: str | None = None) -> pd.DataFrame:
    """One row per run, newest first, as the runs page lists them."""
    return pd.DataFrame(
        {
            "open": [f"run?run={run_id}" for run_id in runs["id"]],
            "status": [status_label(s) for s in runs["status"]],
            # A run without a name of its own is named after its id: shown once, in the run column.
            "name": ["" if name == run_id else name for name, run_id in zip(runs["name"], runs["id"])],
            "model": runs["model"],
            "epoch": [progress_text(r) for r in runs.to_dict("records")],
            # Text, so that a run without a validated epoch shows a dash, not "None".
            "best val accuracy": ["–" if pd.isna(v) else f"{v:.4f}" for v in runs["best_val_accuracy"]],
            "last update": [local_time(t, tz_name) for t in runs["updated"]],
        }
    )


def config_table(config: Mapping[str, Any], run_hot_keys: Collection[str] | None = None) -> pd.DataFrame:
    """The config in force, with whether each key may change mid-run (in this run: ``run_hot_keys``)."""
    hot = {row["key"]: row["hot"] for row in describe_keys(run_hot_keys)}
    return pd.DataFrame(
        {
            "key": list(config),
            "value": [value_text(v) for v in config.values()],
            "changes": ["at the next epoch" if hot.get(k) else "fixed for the run" for k in config],
        }
    )


def pending_table(changes: Mapping[str, list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": list(changes),
            "in force": [value_text(old) for old, _ in changes.values()],
            "requested": [value_text(new) for _, new in changes.values()],
        }
    )


def versions_table(versions: pd.DataFrame, tz_name: str | None = None) -> pd.DataFrame:
    """The config history, newest first: what changed, from which epoch, who asked and why."""
    rows = versions.sort_values("version", ascending=False)
    return pd.DataFrame(
        {
            "version": rows["version"],
            "from epoch": rows["epoch"],
            "source": rows["source"],
            "changes": [diff_text(d) or "initial config" for d in rows["diff"]],
            "reason": rows["reason"],
            # What the change answers: advice suggestions (adv_…#1,3) or a revert (revert:v4).
            "request": [c if isinstance(c, str) else "" for c in rows.get("change_id", [""] * len(rows))],
            "recorded": [local_time(t, tz_name) for t in rows["time"]],
        }
    )


def events_table(events: pd.DataFrame, tz_name: str | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": [local_time(t, tz_name) for t in events["time"]],
            "epoch": ["" if pd.isna(e) else str(int(e)) for e in events["epoch"]],
            "level": [LEVEL_ICONS.get(level, level) for level in events["level"]],
            "message": events["message"],
        }
    )


def events_markdown(events: pd.DataFrame, tz_name: str | None = None) -> str:
    """``events_table`` as a Markdown table. Rendered, its message column takes the width the
    others leave and wraps, so a long message (why an edit was refused, an error) reads in
    full; a data grid cuts it off, and ``st.table`` caps each column at 25rem. Every cell
    is escaped: messages hold the trainer's and users' text."""
    table = events_table(events, tz_name)
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for time, epoch, level, message in table.itertuples(index=False):
        # Non-breaking spaces and hyphens keep a date with its time and an icon with its word;
        # a row of a Markdown table is one line, so a message's line breaks become spaces.
        cells = [time.replace(" ", NBSP).replace("-", NB_HYPHEN), epoch, md_escape(level).replace(" ", NBSP),
                 " ".join(md_escape(message).split())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def config_diff_table(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Keys whose values differ between the configs (label -> config); one column per run.

    A key one config lacks (a run recorded under an older schema) shows as ``ABSENT``.
    """
    keys: list[str] = []
    for config in configs.values():
        keys += [k for k in config if k not in keys]

    def cell(config: Mapping[str, Any], key: str) -> str:
        return value_text(config[key]) if key in config else ABSENT

    differing = [k for k in keys if len({cell(c, k) for c in configs.values()}) > 1]
    table = pd.DataFrame({"key": differing})
    for label, config in configs.items():
        table[label] = [cell(config, k) for k in differing]
    return table


def final_metrics_table(runs: pd.DataFrame, metrics: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """Per run: the last epoch's train/val loss and accuracy, the best val accuracy, the epochs."""
    # Grouped once over all the runs' rows: a mask per run would scan every row again for each run.
    last = last_epoch_values(metrics)
    accuracy = metrics[(metrics["split"] == "val") & (metrics["name"] == "accuracy")]
    best = accuracy.groupby("run_id")["value"].max()
    rows = []
    for run in runs.to_dict("records"):
        value = last.get(run["id"], {})
        rows.append(
            {
                "run": labels.get(run["id"], run["id"]),
                "run id": run["id"],
                "status": run["status"],
                "epochs": epochs_done(run),
                "train loss": value.get("train/loss"),
                "val loss": value.get("val/loss"),
                "train accuracy": value.get("train/accuracy"),
                "val accuracy": value.get("val/accuracy"),
                "best val accuracy": best.get(run["id"]),
            }
        )
    return pd.DataFrame(rows)


def last_epoch_values(metrics: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Run id -> the values logged at that run's last epoch, by ``"split/name"``."""
    last = metrics[metrics["epoch"] == metrics.groupby("run_id")["epoch"].transform("max")]
    values: dict[str, dict[str, float]] = {}
    for run_id, split, name, value in zip(last["run_id"], last["split"], last["name"], last["value"]):
        values.setdefault(run_id, {})[f"{split}/{name}"] = value
    return values


def in_force_table(state: Mapping[str, Any]) -> pd.DataFrame:
    """The trainer's ``state.json`` as (setting, in force) rows a person can scan."""
    opt, last, ema = state["optimizer"], state["last_epoch"], state["ema"]
    group = ", ".join(f"{k} {value_text(opt[k])}" for k in ("lr", "weight_decay", "betas", "momentum", "nesterov")
                      if k in opt)
    mixed = ", ".join(f"{kind} {n}" for kind, n in last["mixed_batches"].items()) or "none"
    rows = {
        "optimizer": f"{opt['class']} ({group})",
        "batches": f"{last['batches']} batches of up to {last['largest_batch']} samples, "
                   f"{last['optimizer_steps']} optimizer steps, {last['sampler']}",
        "learning rate": f"{last['last_lr']:.3g} at the last step; plateau scale {state['plateau']['scale']:g}",
        "loss": f"label smoothing {last['label_smoothing']:g}; {state['imbalance']}",
        "augmentation": f"{last['augmented_batches']} of {last['batches']} batches augmented; mixed batches: {mixed}",
        "dropout": ", ".join(f"{rate:g}" for rate in state["dropout"]) or "no dropout layers",
        "parameters": state["freeze"],  # says how many of how many train
        "gradients": f"largest norm {last['max_grad_norm']:.3g} before clipping"
                     + (f", clipped to {last['clip_limit']:g}" if last["clip_limit"] else ", not clipped"),
        "precision": f"{state['precision']['in_force']}; logits in {last['compute_dtype']}",
        "weight average (EMA)": f"decay {ema['decay']:g}, {ema['updates']:,} updates" if ema["active"] else "off",
        "early stopping": (f"on, patience {state['early_stopping']['patience']}" if state["early_stopping"]["enabled"]
                           else "off") + f"; best val loss at epoch {state['early_stopping']['best_epoch']}",
    }
    return pd.DataFrame({"setting": list(rows), "in force": list(rows.values())})
