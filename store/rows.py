"""Metric rows: what one ``log`` call becomes in the ``metrics`` table, and how
they come back as one DataFrame."""

from __future__ import annotations

import itertools
import time
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

METRIC_COLUMNS = ("run_id", "epoch", "split", "name", "value", "time")


def split_metric_key(key: str) -> tuple[str, str]:
    """``"val/loss"`` -> ``("val", "loss")``; ``"lr"`` -> ``("", "lr")``."""
    split, _, name = key.rpartition("/")
    return split, name


MetricRow = tuple  # (run_id, split, name, epoch, value, time): the metrics table's key order


def metric_rows(run_id: str, epoch: int, metrics: Mapping[str, float]) -> list[MetricRow]:
    """The rows one ``log`` call stores; raises ``TypeError`` naming a value that is not a number."""
    now = time.time()
    epoch = int(epoch)
    try:
        return [(run_id, *split_metric_key(key), epoch, float(value), now) for key, value in metrics.items()]
    except (TypeError, ValueError):
        for key, value in metrics.items():
            try:
                float(value)
            except (TypeError, ValueError):
                raise TypeError(f"metric {key!r} must be a number, not {value!r}") from None
        raise


def metrics_frame(series: list[tuple[str, str, str, int]], numbers: Iterable[tuple]) -> pd.DataFrame:
    """Long-form metrics from the two halves of one read.

    ``series`` lists each (run_id, split, name, row count) in table order and
    ``numbers`` yields (epoch, value, time) rows in the same order, as many as
    the counts add up to. Only numbers cross from SQLite to Python row by row; the text
    columns are rebuilt by repeating each series' key, which makes reading a
    whole workload about twice as fast as ``pandas.read_sql_query``.
    A missing value (SQLite keeps NaN as NULL) must arrive as the text 'nan'.
    """
    counts = [count for *_, count in series]
    total = sum(counts)
    flat = np.fromiter(itertools.chain.from_iterable(numbers), dtype=np.float64, count=3 * total).reshape(total, 3)
    which = np.repeat(np.arange(len(series)), counts)
    keys = {column: pd.array([s[i] for s in series], dtype="str").take(which)
            for i, column in enumerate(("run_id", "split", "name"))}
    return pd.DataFrame({"run_id": keys["run_id"], "epoch": flat[:, 0].astype(np.int64), "split": keys["split"],
                         "name": keys["name"], "value": flat[:, 1], "time": flat[:, 2]}, columns=list(METRIC_COLUMNS))
