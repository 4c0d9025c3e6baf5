"""Hyperparameters against a score: the Compare page's parallel coordinates and scatter.

Pure functions from a table of configs (one row per run) and each run's best
value of a metric to Plotly figures; no Streamlit. Colours follow
``dashboard.charts``: the run's own colour where runs are told apart, Viridis
where colour shows a score.
"""

from __future__ import annotations

import html
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.charts import MAX_LR_TICKS, RUN_COLOURS, metric_title
from trainer.config import COMPAT, TrainConfig, field_info

MAX_CHOICE_LABELS = 12  # a text key with more distinct values is a name, not a setting to plot
LOG_AXIS_RATIO = 100.0  # positive values spanning this factor or more get a log axis (learning rates)


def lower_is_better(name: str) -> bool:
    # Losses and error rates fall as a model improves; accuracy, F1, AUC rise.
    return "loss" in name or "error" in name


def best_values(metrics: pd.DataFrame, split: str, name: str) -> pd.Series:
    """Each run's best value of the metric (lowest for losses and errors, else highest), by run id."""
    values = metrics[(metrics["split"] == split) & (metrics["name"] == name)].groupby("run_id")["value"]
    return values.min() if lower_is_better(name) else values.max()


def hyperparameter_table(configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The keys worth plotting against a metric, one row per run id (``configs``' order).

    A key qualifies when every config has it, its values differ, and they are all
    numbers, all true/false, or all text with few distinct values (a choice such
    as the optimizer or the model). Seed 003's bookkeeping keys, which training
    ignores, never qualify.
    """
    keys = [k for k in next(iter(configs.values()), {}) if all(k in c for c in configs.values())]
    columns = {}
    for key in keys:
        if key in TrainConfig.model_fields and field_info(key) == COMPAT:
            continue
        values = [config[key] for config in configs.values()]
        if _plottable(values) and len({repr(v) for v in values}) > 1:
            columns[key] = values
    return pd.DataFrame(columns, index=pd.Index(list(configs), name="run_id"))


def _plottable(values: list[Any]) -> bool:
    if all(isinstance(v, bool) for v in values):
        return True
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return all(math.isfinite(v) for v in values)
    return all(isinstance(v, str) for v in values) and len(set(values)) <= MAX_CHOICE_LABELS


def _encoded(column: pd.Series) -> tuple[np.ndarray, list[float] | None, list[str] | None]:
    """A column as numbers on an axis, plus tick positions and labels for true/false and choices."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype(int).to_numpy(), [0, 1], ["false", "true"]
    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float).to_numpy(), None, None
    choices = sorted(column.unique())
    return column.map({c: i for i, c in enumerate(choices)}).to_numpy(dtype=int), list(range(len(choices))), choices


def _value_label(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"  # as the config file spells it
    return f"{value:g}" if isinstance(value, float) else str(value)


def _spans_decades(values: np.ndarray) -> bool:
    return bool((values > 0).all() and values.max() / values.min() >= LOG_AXIS_RATIO)


def _log_ticks(values: np.ndarray) -> list[float]:
    """Each value used, when few enough to label; else the powers of ten they span."""
    distinct = sorted(set(values.tolist()))
    if len(distinct) <= MAX_LR_TICKS:
        return distinct
    return [10.0**k for k in range(math.floor(math.log10(distinct[0])), math.ceil(math.log10(distinct[-1])) + 1)]


PARCOORDS_TICK_CHARS = 12


def _parcoords_dimension(key: str, column: pd.Series) -> dict[str, Any]:
    values, tickvals, ticktext = _encoded(column)
    if tickvals is None and _spans_decades(values):
        # Parallel coordinates have no log axes: plot log10 and label the ticks with the values.
        ticks = _log_ticks(values)
        return dict(label=f"{key} (log)", values=np.log10(values), tickvals=np.log10(ticks).tolist(),
                    ticktext=[f"{t:g}" for t in ticks])
    dimension = dict(label=key, values=values)
    if tickvals is not None:
        # Axes sit ~70 px apart: long choice names (paths, model names) would run into the next axis.
        short = [text if len(text) <= PARCOORDS_TICK_CHARS else text[:PARCOORDS_TICK_CHARS - 1] + "…"
                 for text in ticktext]
        dimension.update(tickvals=tickvals, ticktext=short, range=[tickvals[0], tickvals[-1]])
    return dimension


def parallel_figure(table: pd.DataFrame, best: pd.Series, target: tuple[str, str]) -> go.Figure:
    """One line per run across its hyperparameters (``table``) to its best ``target`` metric."""
    title = f"best {metric_title(*target).lower()}"
    scores = best.reindex(table.index).to_numpy(dtype=float)
    dimensions = [_parcoords_dimension(key, table[key]) for key in table.columns]
    dimensions.append(dict(label=title, values=scores))
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        # Better runs get the bright end whether the metric rises or falls. No colour bar:
        # the last axis is the metric's scale already.
        line=dict(color=scores, colorscale="Viridis", reversescale=lower_is_better(target[1])),
        # Slanted axis names: a dozen long key names side by side would overlap level.
        labelangle=-20, labelside="top",
    ))
    fig.update_layout(title=f"Hyperparameters and {title}", margin=dict(l=110, r=60, t=150, b=30),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
    return fig


def hyperparameter_scatter(table: pd.DataFrame, best: pd.Series, target: tuple[str, str], key: str,
                           labels: Mapping[str, str], colour_key: str | None = None) -> go.Figure:
    """Best ``target`` value against ``key``; one colour per run (as on the curves), or by ``colour_key``."""
    title = f"best {metric_title(*target).lower()}"
    x, tickvals, ticktext = _encoded(table[key])
    scores = best.reindex(table.index).to_numpy(dtype=float)
    names = [labels.get(run_id, run_id) for run_id in table.index]
    hover = [f"{html.escape(n)}<br>{html.escape(key)}: {html.escape(_value_label(v))}<br>{title}: {s:.4g}"
             for n, v, s in zip(names, table[key], scores)]
    fig = go.Figure()
    if colour_key is None:
        # The colour each run has on the curves above, from its place among all chosen runs.
        position = {run_id: i for i, run_id in enumerate(labels)}
        for run_id, name, xi, score, text in zip(table.index, names, x, scores, hover):
            colour = RUN_COLOURS[position.get(run_id, 0) % len(RUN_COLOURS)]
            fig.add_scatter(x=[xi], y=[score], mode="markers", name=name, marker=dict(size=12, color=colour),
                            hovertext=[text], hoverinfo="text")
    else:
        shade, shade_ticks, shade_text = _encoded(table[colour_key])
        colorbar = dict(title=dict(text=colour_key, side="right"))
        if shade_ticks is not None:
            colorbar.update(tickvals=shade_ticks, ticktext=shade_text)
        fig.add_scatter(x=x, y=scores, mode="markers", showlegend=False, hovertext=hover, hoverinfo="text",
                        marker=dict(size=12, color=shade, colorscale="Viridis", showscale=True, colorbar=colorbar))
    fig.update_layout(title=f"{title[:1].upper() + title[1:]} by {key}", xaxis_title=key, yaxis_title=title,
                      margin=dict(l=10, r=10, t=70, b=10), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)")
    if tickvals is not None:
        fig.update_xaxes(tickvals=tickvals, ticktext=ticktext, range=[tickvals[0] - 0.5, tickvals[-1] + 0.5])
    elif _spans_decades(x):
        fig.update_xaxes(type="log", tickformat="~g")
    return fig
