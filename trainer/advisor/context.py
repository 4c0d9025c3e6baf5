"""What an advisor looks at: the run as a good engineer would read it.

``build_context`` gathers it from the store (config, adjustable keys and their
bounds, the per-epoch history, earlier changes and what followed each, the
latest epoch's per-class recall and confusion matrix, class counts) and
``context_payload`` turns it into the JSON document sent to Claude. The offline
rules read the same ``RunContext``. Torch-free.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any, Collection

import numpy as np

from tiller.store import Store
from tiller.trainer.steering.config import TrainConfig, autopilot_keys, describe_keys, steerable_keys

# Metrics of each epoch that an advisor sees, in this order.
# A long run's history is thinned before it is sent: every epoch of the recent
# past, evenly spaced epochs before it; the prompt stays a few thousand tokens.
RECENT_EPOCHS = 60
EARLIER_EPOCHS = 40
MAX_CHANGES_SENT = 20

HISTORY_KEYS = ("train/loss", "train/accuracy", "val/loss", "val/accuracy", "lr", "train/grad_norm",
                "epoch_seconds")


@dataclass(frozen=True)
class ClassStats:
    """Per-class picture of the latest validated epoch."""

    epoch: int
    names: list[str]
    val_counts: list[int]
    train_counts: list[int] | None
    recall: list[float | None]  # None for a class without validation samples
    confusion: list[list[int]]  # rows: true class, columns: predicted class


@dataclass(frozen=True)
class PastChange:
    """A config version after the first, and how the run did before and after it."""

    version: int
    epoch: int  # the first epoch trained with it
    source: str
    reason: str
    diff: dict[str, list[Any]]
    before: dict[str, float]  # val metrics of the epoch before it took effect
    after: dict[str, float]  # val metrics of the last epoch trained with it


@dataclass(frozen=True)
class RunContext:
    run_id: str
    model: str
    dataset: str
    status: str
    config: dict[str, Any]
    history: list[dict[str, float]]  # one row per epoch: {"epoch": n, "val/loss": ..., ...}
    changes: list[PastChange] = field(default_factory=list)
    classes: ClassStats | None = None
    question: str = ""
    hot_keys: list[str] | None = None  # the hot keys the run's own loop reads; None: every one

    def steers(self, key: str) -> bool:
        """Whether the run's training loop reads ``key`` (a key it does not read is fixed for it)."""
        return self.hot_keys is None or key in self.hot_keys

    @property
    def epochs_done(self) -> int:
        return int(self.history[-1]["epoch"]) if self.history else 0

    def series(self, key: str) -> list[float]:
        """One metric over the epochs (NaN where an epoch lacks it)."""
        return [row.get(key, math.nan) for row in self.history]

    @property
    def train_size(self) -> int | None:
        if self.classes is None or self.classes.train_counts is None:
            return None
        return int(sum(self.classes.train_counts))


def adjustable_keys(run_hot_keys: Collection[str] | None = None) -> list[str]:
    """The keys an advisor may suggest: hot, read by the run's loop (``run_hot_keys``; None:
    every hot key), and not the autopilot's own limits."""
    excluded = set(autopilot_keys())
    return [key for key in steerable_keys(run_hot_keys) if key not in excluded]


def key_catalogue(run_hot_keys: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """For each adjustable key: its type, bounds or choices, and what it does."""
    rows = {row["key"]: row for row in describe_keys()}
    catalogue = {}
    for key in adjustable_keys(run_hot_keys):
        annotation = TrainConfig.model_fields[key].annotation
        entry: dict[str, Any] = {"type": _type_name(annotation), "description": rows[key]["description"]}
        if typing.get_origin(annotation) is typing.Literal:
            entry["choices"] = list(typing.get_args(annotation))
        if rows[key]["bounds"]:
            entry["bounds"] = rows[key]["bounds"]
        catalogue[key] = entry
    return catalogue


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "string"
    if typing.get_origin(annotation) is dict:
        return "object (class name -> number)"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(annotation, str(annotation))


# ------------------------------------------------------------------ building


def build_context(store: Store, run_id: str, question: str = "") -> RunContext:
    run = store.run(run_id)
    history = epoch_rows(store, run_id)
    return RunContext(
        run_id=run_id,
        model=str(run["model"]),
        dataset=str(run["dataset"]),
        status=str(run["status"]),
        config=store.current_config(run_id),
        history=history,
        changes=past_changes(store, run_id, history),
        classes=class_stats(store, run_id),
        question=question.strip(),
        hot_keys=run["hot_keys"],
    )


def epoch_rows(store: Store, run_id: str) -> list[dict[str, float]]:
    metrics = store.metrics([run_id])
    if metrics.empty:
        return []
    metrics["key"] = np.where(metrics["split"] == "", metrics["name"], metrics["split"] + "/" + metrics["name"])
    wide = metrics.pivot_table(index="epoch", columns="key", values="value", aggfunc="last").sort_index()
    keys = [key for key in HISTORY_KEYS if key in wide.columns]
    return [{"epoch": int(epoch), **{k: float(row[k]) for k in keys if not math.isnan(row[k])}}
            for epoch, row in wide[keys].iterrows()]


def past_changes(store: Store, run_id: str, history: list[dict[str, float]]) -> list[PastChange]:
    versions = store.config_versions(run_id)
    by_epoch = {int(row["epoch"]): row for row in history}
    starts = [int(e) for e in versions["epoch"]]
    changes = []
    for i, row in enumerate(versions.itertuples()):
        if row.version == 1:
            continue
        end = starts[i + 1] - 1 if i + 1 < len(starts) else (history[-1]["epoch"] if history else 0)
        last_under = max((e for e in by_epoch if row.epoch <= e <= end), default=None)
        changes.append(PastChange(
            version=int(row.version), epoch=int(row.epoch), source=str(row.source), reason=str(row.reason or ""),
            diff=dict(row.diff),
            before=_val_metrics(by_epoch.get(int(row.epoch) - 1)),
            after=_val_metrics(by_epoch.get(last_under)) if last_under is not None else {},
        ))
    return changes


def _val_metrics(row: dict[str, float] | None) -> dict[str, float]:
    if not row:
        return {}
    return {k: row[k] for k in ("epoch", "val/loss", "val/accuracy", "train/loss") if k in row}


def class_stats(store: Store, run_id: str) -> ClassStats | None:
    epochs = store.prediction_epochs(run_id)
    if not epochs:
        return None
    predictions = store.predictions(run_id, epochs[-1])
    n = len(predictions.class_names)
    # numpy, not sklearn.metrics: one bincount, and `tiller suggest` starts a second sooner.
    matrix = np.bincount(predictions.labels * n + predictions.predicted, minlength=n * n).reshape(n, n)
    support = matrix.sum(axis=1)
    recall = [float(matrix[c, c] / support[c]) if support[c] else None for c in range(n)]
    return ClassStats(epoch=predictions.epoch, names=list(predictions.class_names),
                      val_counts=[int(x) for x in support], train_counts=predictions.train_counts,
                      recall=recall, confusion=matrix.tolist())


# ------------------------------------------------------------------- payload


def context_payload(ctx: RunContext) -> dict[str, Any]:
    """The JSON document an LLM advisor reads (no secrets: the config holds none)."""
    adjustable = key_catalogue(ctx.hot_keys)
    payload: dict[str, Any] = {
        "run": {"id": ctx.run_id, "model": ctx.model, "dataset": ctx.dataset, "status": ctx.status,
                "epochs_done": ctx.epochs_done, "num_epochs": ctx.config.get("num_epochs")},
        "config": ctx.config,
        "adjustable_keys": adjustable,
        "fixed_keys": sorted(k for k in ctx.config if k not in adjustable),
        "history": _rounded(thinned(ctx.history)),
        "earlier_changes": [
            {"version": c.version, "first_epoch": c.epoch, "source": c.source, "reason": c.reason,
             "changed": c.diff, "val_before": _rounded(c.before), "val_after": _rounded(c.after)}
            for c in ctx.changes[-MAX_CHANGES_SENT:]
        ],
    }
    if ctx.hot_keys is not None:
        # Without a word, an advisor would take the short key list for Tiller's whole schema.
        payload["adjustable_keys_note"] = ("this run's own training loop reads only these hot keys; every other "
                                           "key is fixed for it")
    if len(ctx.history) > RECENT_EPOCHS + EARLIER_EPOCHS:
        payload["history_note"] = (f"{len(thinned(ctx.history))} of {len(ctx.history)} epochs: every epoch of the "
                                   f"last {RECENT_EPOCHS}, evenly spaced ones before")
    if len(ctx.changes) > MAX_CHANGES_SENT:
        payload["earlier_changes_note"] = f"the last {MAX_CHANGES_SENT} of {len(ctx.changes)} changes"
    if ctx.classes is not None:
        payload["classes"] = {
            "epoch": ctx.classes.epoch, "names": ctx.classes.names, "train_counts": ctx.classes.train_counts,
            "val_counts": ctx.classes.val_counts, "recall": _rounded(ctx.classes.recall),
            "confusion_matrix": {"rows": "true class", "columns": "predicted class",
                                 "values": ctx.classes.confusion},
        }
    if ctx.question:
        payload["question"] = ctx.question
    return payload


def thinned(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Every epoch of the last RECENT_EPOCHS, and EARLIER_EPOCHS evenly spaced ones before them."""
    if len(history) <= RECENT_EPOCHS + EARLIER_EPOCHS:
        return history
    earlier, recent = history[:-RECENT_EPOCHS], history[-RECENT_EPOCHS:]
    picks = np.linspace(0, len(earlier) - 1, EARLIER_EPOCHS).round().astype(int)
    return [earlier[i] for i in sorted(set(picks))] + recent


def _rounded(value: Any) -> Any:
    """Four significant digits: enough to judge a run, and a smaller prompt."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
