"""Store DataFrames -> Plotly figures. Pure functions, no Streamlit: testable alone.

Metrics come in the store's long form (run_id, epoch, split, name, value).

No fonts or template are fixed here. Colours are fixed only where traces must be
told apart: training vs validation (``SPLIT_COLOURS``: orange dots, blue line; the
template's colorway starts with two blues) and runs (``RUN_COLOURS``), and Viridis
where colour shows a score. Each fixed colour keeps a 3:1 contrast (what WCAG asks
of graphics) on a white and on Streamlit's near-black page. Other traces take the
template's colorway, so inside Streamlit (``st.plotly_chart(theme="streamlit")``)
they follow the user's light or dark theme, and on their own they use Plotly's
default. Backgrounds are transparent and the config-change markers a neutral
grey (or the run's colour) for the same reason: both read on a light and on a dark page.

A config change is recorded at the epoch it applies from, before that epoch is
logged: until it is, the change is *pending* and drawn as an open diamond (an
applied one is filled), its hover saying the epoch is not logged yet. On the Run
page it sits at its epoch, and the three charts share one epoch range
(``run_epoch_range``) that includes it, so their epochs line up; on the Compare
page it sits on the run's last point, so it never floats past the end of the line.

The Compare page's curves are smoothed (``tiller.dashboard.smoothing``) and reduced to
a point budget (``tiller.dashboard.downsample``) here, so every caller draws them alike.

Figures are built in one go from plain dicts (traces, shapes, layout): Plotly
validates a figure built property by property (``add_scatter``, ``add_vline``,
``update_layout``) at every step, several times slower, and the live pages
redraw these charts every two seconds.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, NamedTuple

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from tiller.dashboard.downsample import METHOD_NOTES, Method, downsample
from tiller.dashboard.labels import plot_text
from tiller.dashboard.smoothing import Smoothing, smooth_runs

SPLIT_TITLES = {"train": "Training", "val": "Validation", "": ""}
NAME_TITLES = {
    "loss": "loss",
    "accuracy": "accuracy",
    "lr": "learning rate",
    "epoch_seconds": "seconds per epoch",
    "samples_per_sec": "samples per second",
}
MARKER_GREY = "rgba(128, 128, 128, 0.8)"  # visible on white and on near-black
# Orange dots and a blue line: apart in hue for every common colour blindness, and
# each at least 3:1 against white and against Streamlit's dark background (#0e1117).
SPLIT_COLOURS = {"train": "#E66100", "val": "#2F7ED8"}
# Runs side by side need distinct hues; Streamlit's colorway starts with two
# blues. Plotly's qualitative palette reads on light and on dark pages.
RUN_COLOURS = plotly.colors.qualitative.Plotly
LR_HEIGHT_PX = 340  # the lr is mostly flat steps: less height than the loss curves
MAX_LR_TICKS = 8  # beyond this many distinct rates, labels at each would overlap
DEFAULT_MAX_POINTS = 2_000  # per line: fifty runs of raw and smoothed lines still draw smoothly
MARKERS_UP_TO = 60  # points per line; beyond this, markers bury the line they sit on
RAW_OPACITY = 0.25  # the raw line under a smoothed one: there to check against, not to read first
UNIFIED_HOVER_UP_TO = 8  # runs; one hover box listing more lines than this is too long to read


def metric_title(split: str, name: str) -> str:
    """``("val", "accuracy")`` -> ``"Validation accuracy"``; ``("", "lr")`` -> ``"Learning rate"``."""
    words = " ".join(w for w in (SPLIT_TITLES.get(split, split), NAME_TITLES.get(name, name)) if w)
    return words[:1].upper() + words[1:]


def _select(metrics: pd.DataFrame, split: str, name: str) -> pd.DataFrame:
    rows = metrics[(metrics["split"] == split) & (metrics["name"] == name)]
    return rows.sort_values("epoch")


def _layout(*, title: str, y_title: str, last_epoch: int,
            x_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """The layout every per-epoch chart shares; ``x_range`` (first, last epoch) fixes the
    epochs shown, so charts side by side line up."""
    # Epochs are whole numbers: never let Plotly put a tick at epoch 1.5.
    xaxis = dict(title=dict(text="epoch"), tickformat="d", tick0=1, dtick=max(1, math.ceil(last_epoch / 12)))
    if x_range is not None:
        xaxis["range"] = _padded(x_range)
    return dict(
        title=dict(text=title),
        xaxis=xaxis,
        yaxis=dict(title=dict(text=y_title)),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        margin=dict(l=10, r=10, t=70, b=10),
        hovermode="x unified",
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        # A constant uirevision keeps the user's zoom and hidden traces when the
        # live page redraws the figure with one more epoch.
        uirevision="keep",
    )


def _padded(epochs: tuple[int, int]) -> list[float]:
    """The axis range of epochs ``first..last``, with room for the markers at both ends."""
    first, last = epochs
    pad = max(0.3, (last - first) * 0.03)
    return [first - pad, last + pad]


def _last_epoch(frame: pd.DataFrame) -> int:
    return int(frame["epoch"].max()) if not frame.empty else 1


def _later_versions(versions: pd.DataFrame) -> list[dict[str, Any]]:
    """The config changes: version 1 is the config the run started with."""
    return [] if versions.empty else versions[versions["version"] > 1].to_dict("records")


def _applied_and_pending(changes: list[dict[str, Any]], logged_up_to: int) -> tuple[list[dict], list[dict]]:
    """The changes in force from a logged epoch, and those whose epoch is not logged yet."""
    return ([c for c in changes if c["epoch"] <= logged_up_to], [c for c in changes if c["epoch"] > logged_up_to])


def run_epoch_range(metrics: pd.DataFrame, versions: pd.DataFrame) -> tuple[int, int]:
    """The epochs the Run page's charts show, the same on each: from the first logged to the
    last logged, or to a change recorded for an epoch not logged yet (the one in progress)."""
    first = int(metrics["epoch"].min()) if not metrics.empty else 1
    last = max([_last_epoch(metrics)] + [int(c["epoch"]) for c in _later_versions(versions)])
    return first, last


def train_val_figure(metrics: pd.DataFrame, name: str, max_points: int = DEFAULT_MAX_POINTS, *,
                     x_range: tuple[int, int] | None = None) -> go.Figure:
    """Training (orange markers) and validation (blue line) values of ``name`` per epoch, as
    in seed 004; each reduced to ``max_points`` (min/max per bucket) when longer, as a user's
    loop logging steps makes them. ``x_range``: the epochs to show (``run_epoch_range``)."""
    traces = []
    for split, mode in (("train", "markers"), ("val", "lines")):
        rows, _ = downsample(_select(metrics, split, name), max_points)
        if mode == "lines" and len(rows) == 1:
            mode = "lines+markers"  # a line through one point draws nothing
        colour = SPLIT_COLOURS[split]
        traces.append(dict(type="scatter", x=rows["epoch"], y=rows["value"], mode=mode,
                           name=plot_text(metric_title(split, name)),
                           line=dict(color=colour), marker=dict(color=colour, size=7), hovertemplate="%{y:.4f}"))
    shown = plot_text(NAME_TITLES.get(name, name))  # a loop of one's own names its metrics
    title = f"Training and validation {shown}"
    last_epoch = x_range[1] if x_range else _last_epoch(metrics[metrics["name"] == name])
    return go.Figure(data=traces, layout=_layout(title=title, y_title=shown,
                                                 last_epoch=last_epoch, x_range=x_range))


def _change_hover(version: Mapping, *, pending: bool = False) -> str:
    """Hover text of one config version; user text is escaped (Plotly reads tags in it)."""
    lines = [f"<b>v{version['version']}</b> from {plot_text(version['source'])}, epoch {version['epoch']}"]
    if pending:
        lines.append(f"<i>pending: in force from epoch {version['epoch']}, not logged yet</i>")
    lines += [
        plot_text(f"{key}: {old!r} → {new!r}") for key, (old, new) in version["diff"].items()
    ]
    if version["reason"]:
        lines.append(plot_text(f"reason: {version['reason']}"))
    return "<br>".join(lines)


def lr_figure(metrics: pd.DataFrame, versions: pd.DataFrame, max_points: int = DEFAULT_MAX_POINTS, *,
              x_range: tuple[int, int] | None = None) -> go.Figure:
    """Learning rate per epoch, with a dotted line where each later config version took effect;
    reduced to ``max_points`` (min/max per bucket) when longer. A change whose epoch is not
    logged yet is pending: an open diamond at its epoch, joined to the curve by a dotted step.
    ``x_range``: the epochs to show; by default ``run_epoch_range``, which includes pending changes."""
    lr = _select(metrics, "", "lr")
    drawn, _ = downsample(lr, max_points)
    # The lr holds for a whole epoch, so draw steps rather than slopes.
    traces = [dict(type="scatter", x=drawn["epoch"], y=drawn["value"], mode="lines+markers", line=dict(shape="hv"),
                   name="learning rate", hovertemplate="%{y:.3~g}")]
    changes = _later_versions(versions)
    logged_up_to = int(metrics["epoch"].max()) if not metrics.empty else 0
    applied, pending = _applied_and_pending(changes, logged_up_to)
    if applied:
        # Markers at the lr each version set, so hovering the curve shows the change too.
        traces.append(_lr_change_markers(applied, name="config change", symbol="diamond"))
    if pending:
        traces += _pending_lr_step(lr, pending)
        traces.append(_lr_change_markers(pending, name="pending change", symbol="diamond-open"))
    x_range = x_range or run_epoch_range(metrics, versions)
    layout = _layout(title="Learning rate and config changes", y_title="learning rate (log scale)",
                     last_epoch=x_range[1], x_range=x_range)
    layout["height"] = LR_HEIGHT_PX
    if changes:
        # A dotted line across the plot at each change, labelled above it.
        layout["shapes"] = [_change_line(change["epoch"]) for change in changes]
        waiting = {c["version"] for c in pending}
        layout["annotations"] = [_change_label(change, pending=change["version"] in waiting) for change in changes]
    # Every rate logged (not only those drawn) and every rate a change set gets its tick.
    layout["yaxis"].update(_lr_axis(set(lr["value"]) | {c["config"].get("learning_rate") for c in changes}))
    return go.Figure(data=traces, layout=layout)


def _lr_change_markers(changes: list[Mapping], *, name: str, symbol: str) -> dict[str, Any]:
    pending = symbol.endswith("-open")
    return dict(
        type="scatter", x=[c["epoch"] for c in changes], y=[c["config"].get("learning_rate") for c in changes],
        mode="markers", name=name, hovertext=[_change_hover(c, pending=pending) for c in changes], hoverinfo="text",
        marker=dict(symbol=symbol, size=11, color=MARKER_GREY, line=dict(width=2, color=MARKER_GREY)),
    )


def _pending_lr_step(lr: pd.DataFrame, pending: list[Mapping]) -> list[dict[str, Any]]:
    """A dotted step from the last logged rate to the rate each pending change sets: the curve
    as it will go on, told apart from what was logged."""
    if lr.empty:
        return []
    last = lr.iloc[-1]
    return [dict(type="scatter", x=[last["epoch"]] + [c["epoch"] for c in pending],
                 y=[last["value"]] + [c["config"].get("learning_rate") for c in pending], mode="lines",
                 line=dict(shape="hv", dash="dot", color=MARKER_GREY), showlegend=False, hoverinfo="skip")]


def _lr_axis(rates: set[float | None]) -> dict[str, Any]:
    """Learning rates are changed by factors (÷10, ×3): on a log axis each change is a
    step of its true size. Ticks sit at the rates actually used, so each step of
    the curve is labelled with its value; the padding keeps a constant lr off the edges."""
    used = sorted(r for r in rates if r is not None and r > 0)
    axis: dict[str, Any] = dict(type="log", tickformat="~g")
    if used:
        axis["range"] = [math.log10(used[0]) - 0.3, math.log10(used[-1]) + 0.3]
        if len(used) <= MAX_LR_TICKS:
            axis["tickvals"] = used
    return axis


def _change_line(epoch: int) -> dict[str, Any]:
    """A vertical dotted line at ``epoch`` spanning the plot's height (what ``add_vline`` draws)."""
    return dict(type="line", x0=epoch, x1=epoch, xref="x", y0=0, y1=1, yref="y domain",
                line=dict(color=MARKER_GREY, dash="dot"))


def _change_label(change: Mapping, *, pending: bool = False) -> dict[str, Any]:
    """The version and its source above the change's line; hovering it shows the change."""
    return dict(x=change["epoch"], xref="x", xanchor="center", y=1, yref="y domain", yanchor="bottom",
                text=f"v{change['version']} {plot_text(change['source'])}", showarrow=False,
                hovertext=_change_hover(change, pending=pending), font=dict(color=MARKER_GREY))


class CompareChart(NamedTuple):
    figure: go.Figure
    note: str  # what the downsampling left out, for a caption; empty when every point is drawn


def compare_figure(
    metrics: pd.DataFrame,
    split: str,
    name: str,
    labels: Mapping[str, str],
    *,
    smoothing: Smoothing = Smoothing(),
    versions: Mapping[str, pd.DataFrame] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    method: Method = "minmax",
) -> CompareChart:
    """One line per run (in ``labels``' order) of one metric, smoothed and reduced as asked.

    With smoothing on, the raw line stays under the smoothed one, faint and in the
    same colour. Each line keeps at most ``max_points`` points. ``versions`` (run id
    -> ``config_versions`` rows) adds a marker where each later config version took
    effect, on that run's line; a change whose epoch the run has not logged yet is an
    open diamond on the line's last point.
    """
    selected = _select(metrics, split, name)
    epochs, raw = selected["epoch"].to_numpy(), selected["value"].to_numpy(dtype=float)
    smoothed = smooth_runs(selected, smoothing).to_numpy()
    # Row positions per run, in epoch order: numpy slices, far cheaper than sub-frames per run.
    positions = selected.groupby("run_id", sort=False).indices
    # Any metric counts: a change is pending until its epoch is logged at all.
    logged_up_to = metrics.groupby("run_id")["epoch"].max() if versions is not None else pd.Series(dtype=int)
    traces = []
    reduced_lengths = set()
    for index, (run_id, name_of_run) in enumerate(labels.items()):
        label = plot_text(name_of_run)  # the legend, raw line and change markers all show it
        rows = positions.get(run_id, np.array([], dtype=int))
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        if smoothing.active:
            traces.append(_faint_raw_line(epochs[rows], raw[rows], label, run_id, colour, max_points, method))
        curve = pd.DataFrame({"epoch": epochs[rows], "value": smoothed[rows]})
        points, reduced = downsample(curve, max_points, method=method)
        traces.append(dict(type="scatter", x=points["epoch"].to_numpy(), y=points["value"].to_numpy(), name=label,
                           legendgroup=run_id, mode="lines+markers" if len(points) <= MARKERS_UP_TO else "lines",
                           line=dict(color=colour), marker=dict(color=colour), hovertemplate="%{y:.4~g}"))
        if reduced:
            reduced_lengths.add(len(rows))
        if versions is not None and run_id in versions:
            traces += _change_markers(curve, versions[run_id], label, run_id, colour,
                                      logged_up_to=int(logged_up_to.get(run_id, 0)))
    title = plot_text(metric_title(split, name))
    smoothed_by = f", {smoothing.describe()}" if smoothing.active else ""
    layout = _layout(title=f"{title} by run{smoothed_by}", y_title=title[:1].lower() + title[1:],
                     last_epoch=_last_epoch(selected))
    if len(labels) > UNIFIED_HOVER_UP_TO:
        layout["hovermode"] = "closest"
    return CompareChart(go.Figure(data=traces, layout=layout),
                        _reduction_note(reduced_lengths, max_points, method, per="run"))


def _faint_raw_line(epochs: np.ndarray, values: np.ndarray, label: str, run_id: str, colour: str, max_points: int,
                    method: Method) -> dict[str, Any]:
    points, _ = downsample(pd.DataFrame({"epoch": epochs, "value": values}), max_points, method=method)
    # No legend entry and no hover: the legend and the hover box list one line per run.
    return dict(type="scatter", x=points["epoch"].to_numpy(), y=points["value"].to_numpy(), name=f"{label} (raw)",
                legendgroup=run_id, showlegend=False, hoverinfo="skip", opacity=RAW_OPACITY, mode="lines",
                line=dict(color=colour))


def _change_markers(curve: pd.DataFrame, versions: pd.DataFrame, label: str, run_id: str, colour: str, *,
                    logged_up_to: int) -> list[dict[str, Any]]:
    """A diamond on the run's line at each config change (version 2 on), hover showing the change;
    a change after ``logged_up_to`` (the run's last logged epoch) is pending: an open diamond on
    the line's last point. No trace when the run has no change or nothing drawn to put one on."""
    changes = _later_versions(versions)
    drawn = np.isfinite(curve["value"].to_numpy())
    if not changes or not drawn.any():
        return []
    line_epochs, line_values = curve["epoch"].to_numpy()[drawn], curve["value"].to_numpy()[drawn]
    applied, pending = _applied_and_pending(changes, logged_up_to)
    traces = []
    if applied:
        epochs = [change["epoch"] for change in applied]
        # A change can fall between logged points: place it on the line there.
        heights = np.interp(epochs, line_epochs, line_values)
        traces.append(_run_change_trace(epochs, heights, applied, label, run_id, colour, pending=False))
    if pending:
        # Where the line ends: its next point is the one the change will be in force for.
        traces.append(_run_change_trace([line_epochs[-1]] * len(pending), [line_values[-1]] * len(pending),
                                        pending, label, run_id, colour, pending=True))
    return traces


def _run_change_trace(epochs: list, heights, changes: list[Mapping], label: str, run_id: str, colour: str, *,
                      pending: bool) -> dict[str, Any]:
    marker = (dict(symbol="diamond-open", size=13, color=colour, line=dict(width=2, color=colour)) if pending
              else dict(symbol="diamond", size=11, color=colour, line=dict(width=1, color=MARKER_GREY)))
    return dict(
        type="scatter", x=epochs, y=heights, mode="markers", legendgroup=run_id, showlegend=False, marker=marker,
        name=f"{label}: {'pending' if pending else 'config'} changes", hoverinfo="text",
        hovertext=[f"{label}<br>{_change_hover(change, pending=pending)}" for change in changes],
    )


def run_curves_note(metrics: pd.DataFrame, max_points: int = DEFAULT_MAX_POINTS) -> str:
    """What the run page's curves (``train_val_figure``, ``lr_figure``) leave out, for a caption;
    empty when every point is drawn."""
    lengths = metrics.groupby(["split", "name"]).size() if not metrics.empty else pd.Series(dtype=int)
    reduced = {int(n) for n in lengths if n > max_points}
    return _reduction_note(reduced, max_points, "minmax", per="curve")


def _reduction_note(reduced_lengths: set[int], max_points: int, method: Method, *, per: str) -> str:
    if not reduced_lengths:
        return ""
    longest = max(reduced_lengths)
    of = f"{longest:,}" if len(reduced_lengths) == 1 else f"up to {longest:,}"
    return f"Showing at most {max_points:,} of {of} points per {per}: {METHOD_NOTES[method]}."
