"""Hyperparameters against a score: the Compare page's parallel coordinates and scatter.

Pure functions from a table of configs (one row per run) and each run's best
value of a metric to Plotly figures; no Streamlit. Colours follow
``tiller.dashboard.charts``: the run's own colour where runs are told apart, Viridis
where colour shows a second setting. The parallel coordinates' lines show the
score itself, from faint to strong, in a scale made for the page's theme.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tiller.dashboard.charts import MAX_LR_TICKS, RUN_COLOURS, metric_title
from tiller.dashboard.labels import plot_label, plot_text
from tiller.trainer.steering.config import COMPAT, TrainConfig, field_info

MAX_CHOICE_LABELS = 12  # a text key with more distinct values is a name, not a setting to plot
LOG_AXIS_RATIO = 100.0  # positive values spanning this factor or more get a log axis (learning rates)
# Parallel coordinates draw 1 px lines and ignore a colour's alpha, so "better" cannot be
# "more opaque": it is more contrast with the page instead. A scale for each theme, from a
# grey that recedes into the page (worse) to a blue that stands out from it (better); a
# single scale would end near white or near black and vanish on one of the two pages.
LINE_SCALES = {
    "light": [[0.0, "#8a93a3"], [1.0, "#0b2fa8"]],  # grey to deep blue, on white
    "dark": [[0.0, "#566072"], [1.0, "#c4e4ff"]],  # grey to near-white blue, on near-black
}
# Plotly draws the parallel axes black at 25 % opacity, lost on a dark page: a grey line on each
# (same place: the axes sit evenly from the plot's left edge to its right) reads on both.
AXIS_GREY = "rgba(128, 128, 128, 0.7)"
POINT_OUTLINE = "rgba(128, 128, 128, 0.9)"  # a pale (yellow) or dark (purple) marker still has an edge on either page
LABELLED_UP_TO = 12  # runs; each point is labelled with its score, beyond this the labels would collide
AXIS_TICKS = 5  # about this many labelled ticks on a score axis


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


def _value_ticks(values: np.ndarray, min_gap: float) -> list[float] | None:
    """Each distinct value as a tick (the settings tried), when few and each at least ``min_gap``
    of the span from the next, so their labels cannot overlap; else ``None`` (round ticks)."""
    distinct = sorted(set(values.tolist()))
    gaps = np.diff(distinct)
    if len(distinct) > MAX_LR_TICKS or (gaps.size and gaps.min() < min_gap * (distinct[-1] - distinct[0])):
        return None
    return distinct


def _spans_decades(values: np.ndarray) -> bool:
    return bool((values > 0).all() and values.max() / values.min() >= LOG_AXIS_RATIO)


def _log_ticks(values: np.ndarray) -> list[float]:
    """Each value used, when few enough to label; else the powers of ten they span."""
    distinct = sorted(set(values.tolist()))
    if len(distinct) <= MAX_LR_TICKS:
        return distinct
    return [10.0**k for k in range(math.floor(math.log10(distinct[0])), math.ceil(math.log10(distinct[-1])) + 1)]


PARCOORDS_TICK_CHARS = 12  # columns (dashboard.labels): a wide script counts two
PARCOORDS_ROOM = 0.06  # of an axis's span, beyond its lowest and highest value
PARCOORDS_TICK_GAP = 1 / 12  # of an axis's span: labels ~20 px apart on a ~250 px axis
SCATTER_TICK_GAP = 1 / 16  # of the x axis's span: "0.0003" and its neighbour stay apart at ~900 px


def _padded(low: float, high: float) -> list[float]:
    """A range a little wider than [low, high]. A line at an axis's very end lies on the plot's
    edge, half cut off and hard to see; with two runs every line is at one end or the other."""
    room = PARCOORDS_ROOM * ((high - low) or (abs(high) or 1.0))
    return [low - room, high + room]


def _parcoords_dimension(key: str, column: pd.Series) -> dict[str, Any]:
    """One axis. The ranges have room at both ends, so Plotly's labels of a range's ends (which
    would read 29.4 and 40.6) are hidden: the ticks say the values, at each value tried when few."""
    values, tickvals, ticktext = _encoded(column)
    key = plot_text(key)  # config keys and choices are the user's text: Plotly reads tags in them
    if tickvals is None and _spans_decades(values):
        # Parallel coordinates have no log axes: plot log10 and label the ticks with the values.
        ticks, logs = _log_ticks(values), np.log10(values)
        return dict(label=f"{key} (log)", values=logs, tickvals=np.log10(ticks).tolist(),
                    ticktext=[f"{t:g}" for t in ticks], range=_padded(logs.min(), logs.max()))
    if tickvals is None:
        dimension = dict(label=key, values=values, range=_padded(values.min(), values.max()))
        ticks = _value_ticks(values, PARCOORDS_TICK_GAP)
        if ticks is not None:
            dimension.update(tickvals=ticks, ticktext=[plot_text(_value_label(v)) for v in ticks])
        return dimension
    # Axes sit ~70 px apart: long choice names (paths, model names) would run into the next axis.
    short = [plot_label(text, PARCOORDS_TICK_CHARS) for text in ticktext]
    return dict(label=key, values=values, tickvals=tickvals, ticktext=short, range=_padded(tickvals[0], tickvals[-1]))


def _score_dimension(title: str, scores: np.ndarray) -> dict[str, Any]:
    """The metric's axis, its round ticks enclosing every run's score (as on the scatter)."""
    axis = enclosing_axis(scores)
    low, high = axis["range"]
    ticks = np.arange(axis["tick0"], high, axis["dtick"])
    return dict(label=title, values=scores, range=[low, high], tickvals=ticks.round(12).tolist(),
                tickformat=".4~g")


def parallel_figure(table: pd.DataFrame, best: pd.Series, target: tuple[str, str], *,
                    theme: str = "light") -> go.Figure:
    """One line per run across its hyperparameters (``table``) to its best ``target`` metric.

    ``theme`` is the page's, "light" or "dark": the better the run, the more its line
    stands out from that page. The best run's line is drawn last, over the others.
    """
    title = plot_text(f"best {metric_title(*target).lower()}")
    scores = best.reindex(table.index).to_numpy(dtype=float)
    order = np.argsort(-scores if lower_is_better(target[1]) else scores, kind="stable")
    table, scores = table.iloc[order], scores[order]
    dimensions = [_parcoords_dimension(key, table[key]) for key in table.columns]
    dimensions.append(_score_dimension(title, scores))
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        # The strong end for the better runs whether the metric rises or falls. No colour bar:
        # the last axis is the metric's scale already.
        line=dict(color=scores, colorscale=LINE_SCALES.get(theme, LINE_SCALES["light"]),
                  reversescale=lower_is_better(target[1])),
        # Slanted axis names: a dozen long key names side by side would overlap level.
        labelangle=-20, labelside="top",
        rangefont=dict(color="rgba(0, 0, 0, 0)"),  # the padded ranges' ends: see _parcoords_dimension
    ))
    axes = len(dimensions)
    fig.update_layout(title=f"Hyperparameters and {title}", margin=dict(l=110, r=60, t=150, b=30),
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      shapes=[dict(type="line", xref="paper", yref="paper", x0=i / (axes - 1), x1=i / (axes - 1),
                                   y0=0, y1=1, line=dict(color=AXIS_GREY, width=1)) for i in range(axes)])
    return fig


def _nice_step(raw: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``raw`` (> 0)."""
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def enclosing_axis(values: np.ndarray, ticks: int = AXIS_TICKS) -> dict[str, Any]:
    """Linear axis settings whose first and last labelled ticks enclose every value.

    Plotly's own range stops just past the points, so a point can sit beyond the
    last label (0.975 above a top tick of 0.97); here the ticks are round steps
    from at or below the lowest value to at or above the highest, with a little
    room beyond them for the markers. A single value (one run, or runs that tie)
    gets a tick either side.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return {}
    low, high = float(values.min()), float(values.max())
    span = high - low or (abs(high) * 0.1 or 1.0)
    step = _nice_step(span / (ticks - 1))
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    if first == last:
        first, last = first - 1, last + 1
    room = 0.35 * step  # half a marker and its label above the top tick, in data units at ~5 ticks
    return dict(range=[first * step - room, last * step + room], tick0=round(first * step, 12), dtick=step,
                tickmode="linear")


def _setting_axis(x: np.ndarray) -> dict[str, Any]:
    """A numeric setting's axis: a tick at each value used when few and apart (the settings tried),
    else round steps; either way with room either side, so no point sits on the plot's edge."""
    if _spans_decades(x):
        ticks = _log_ticks(x)
        low, high = math.log10(x.min()), math.log10(x.max())
        room = 0.15 * (high - low)
        return dict(type="log", tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], range=[low - room, high + room])
    ticks = _value_ticks(x, SCATTER_TICK_GAP)
    if ticks is None:
        return enclosing_axis(x)
    low, high = ticks[0], ticks[-1]
    room = 0.15 * (high - low) if high > low else (abs(high) * 0.25 or 1.0)
    return dict(tickvals=ticks, ticktext=[_value_label(v) for v in ticks], range=[low - room, high + room])


def _colour_scale(key: str, column: pd.Series) -> tuple[np.ndarray, dict[str, Any]]:
    """Marker colours for a second setting and their colour bar. Learning rates spanning 100x or
    more are coloured by their logarithm, or all but the largest would share one end's colour."""
    shade, ticks, text = _encoded(column)
    key, text = plot_text(key), text and [plot_text(t) for t in text]
    colorbar = dict(title=dict(text=key, side="right"))
    if ticks is None and _spans_decades(shade):
        ticks = _log_ticks(shade)
        shade, text, ticks = np.log10(shade), [f"{t:g}" for t in ticks], np.log10(ticks).tolist()
        colorbar["title"]["text"] = f"{key} (log)"
    if ticks is not None:
        colorbar.update(tickvals=ticks, ticktext=text)
    return shade, colorbar


def _label_positions(x: np.ndarray, scores: np.ndarray) -> list[str]:
    """Each point's score label above it, but below it for the lowest of runs sharing a setting:
    two runs with one value and close scores would otherwise print their labels over each other."""
    positions = ["top center"] * len(x)
    for value in set(x.tolist()):
        shared = [i for i in range(len(x)) if x[i] == value]
        if len(shared) > 1:
            positions[min(shared, key=lambda i: scores[i])] = "bottom center"
    return positions


def hyperparameter_scatter(table: pd.DataFrame, best: pd.Series, target: tuple[str, str], key: str,
                           labels: Mapping[str, str], colour_key: str | None = None) -> go.Figure:
    """Best ``target`` value against ``key``; one colour per run (as on the curves), or by ``colour_key``.

    Up to ``LABELLED_UP_TO`` runs each point carries its score, so two or three
    points still read as numbers rather than dots in a large empty frame.
    """
    title = plot_text(f"best {metric_title(*target).lower()}")
    x, tickvals, ticktext = _encoded(table[key])
    ticktext = ticktext and [plot_text(t) for t in ticktext]
    scores = best.reindex(table.index).to_numpy(dtype=float)
    values = table[key]
    # Run names, the key and its values are the user's text: Plotly reads tags in names, ticks and hovers.
    names = [plot_text(labels.get(run_id, run_id)) for run_id in table.index]
    key = plot_text(key)
    hover = [f"{n}<br>{key}: {plot_text(_value_label(v))}<br>{title}: {s:.4g}"
             for n, v, s in zip(names, values, scores)]
    labelled = len(scores) <= LABELLED_UP_TO
    positions = _label_positions(x, scores)
    point = dict(mode="markers+text" if labelled else "markers", cliponaxis=False, hoverinfo="text")
    fig = go.Figure()
    if colour_key is None:
        # The colour each run has on the curves above, from its place among all chosen runs.
        position = {run_id: i for i, run_id in enumerate(labels)}
        for run_id, name, xi, score, text, where in zip(table.index, names, x, scores, hover, positions):
            colour = RUN_COLOURS[position.get(run_id, 0) % len(RUN_COLOURS)]
            fig.add_scatter(x=[xi], y=[score], name=name, marker=dict(size=12, color=colour),
                            text=[f"{score:.4g}"], textposition=where, hovertext=[text], **point)
    else:
        shade, colorbar = _colour_scale(colour_key, table[colour_key])
        fig.add_scatter(x=x, y=scores, showlegend=False, hovertext=hover, text=[f"{s:.4g}" for s in scores],
                        textposition=positions,
                        marker=dict(size=12, color=shade, colorscale="Viridis", showscale=True, colorbar=colorbar,
                                    line=dict(width=1, color=POINT_OUTLINE)), **point)
    fig.update_layout(title=f"{title[:1].upper() + title[1:]} by {key}", xaxis_title=key, yaxis_title=title,
                      # Above the plot, as on the curves: beside it, long run names take half the width.
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
                      margin=dict(l=10, r=10, t=70, b=10), paper_bgcolor="rgba(0,0,0,0)",
                      plot_bgcolor="rgba(0,0,0,0)")
    fig.update_yaxes(**enclosing_axis(scores))
    if tickvals is not None:
        fig.update_xaxes(tickvals=tickvals, ticktext=ticktext, range=[tickvals[0] - 0.5, tickvals[-1] + 0.5])
    else:
        fig.update_xaxes(**_setting_axis(x))
    return fig
