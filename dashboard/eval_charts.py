"""Evaluation numbers (``eval_metrics``) -> Plotly figures. Pure functions, no Streamlit.

As in ``charts``: no fonts or template fixed, transparent backgrounds, and traces in
the template's colorway, so the figures follow Streamlit's light or dark theme.
Class names go on category axes: names such as "0" .. "9" would otherwise turn
into a numeric axis with ticks at 2.5. Ticks and legends show them cut to
``LABEL_COLUMNS`` (one long name would otherwise squeeze the plot to a sliver);
hovers show them whole. Heatmaps take the theme's sequential colours (Streamlit
gives light blues to dark on a light page, dark to light on a dark one), so an
empty cell fades into the page instead of glaring white on a dark one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from tiller.dashboard.eval_metrics import MICRO, RATE_NAMES, BinaryOutcome, Curve
from tiller.dashboard.labels import plot_label, plot_text, short_label, text_columns

COLORWAY_SIZE = 10  # Streamlit's categorical chart colours, in light and dark alike
REFERENCE_GREY = "rgba(128, 128, 128, 0.8)"  # chance and perfect-calibration lines, on light and dark pages
SQUARE_PX = 460  # curves on [0, 1] x [0, 1] read best near square
HEATMAP_MIN_PX, HEATMAP_ROW_PX = 380, 34  # grows with classes so each cell keeps room for its number
LABEL_COLUMNS = 24  # tick and legend labels, in columns (a Chinese character or an emoji takes two)
LABEL_COLUMN_PX = 7  # about one column of tick text: the room a turned tick label takes below the plot
LEGEND_INSIDE_MAX = 7  # more curves than this: the legend goes under the plot, where it covers none
LEGEND_ROW_PX, LEGEND_PER_ROW = 22, 2
CLASS_AXIS_PX = 400  # about the width of a class axis in half the page: more tick text than this is turned
TURNED_TICK_DEGREES = -45  # crowded names then stand apart; at -30 neighbours touch
TURNED_TICK_ROOM = 0.7  # the height a tick label turned by 45 degrees takes, per pixel of its length
BARS_PX = 450  # Plotly's default height, which bars under level ticks have


def class_label(name: object) -> str:
    """A class name as a tick or legend label: cut short, and escaped, since Plotly reads
    labels as HTML and a name such as "<unk>" would vanish."""
    return plot_label(name, LABEL_COLUMNS)


def class_values(names: Sequence[str]) -> list[str]:
    """Class names as a category axis's values: whole, so a hover's %{x} or %{y} names the class in
    full, and escaped, since the hover reads them as HTML too."""
    return [plot_text(n) for n in names]


def _class_axis(names: Sequence[str]) -> dict:
    """A category axis of class names (``class_values``): each tick the short label of its name."""
    return dict(type="category", tickmode="array", tickvals=class_values(names),
                ticktext=[class_label(n) for n in names])


def _class_x_axis(names: Sequence[str]) -> dict:
    """``_class_axis`` along the bottom, its ticks turned when they would not fit side by side.

    Plotly turns crowded ticks by itself, but not always when they are set by ``ticktext``:
    long names then run into each other.
    """
    crowded = len(names) * _tick_room(names) > CLASS_AXIS_PX
    return dict(_class_axis(names), tickangle=TURNED_TICK_DEGREES if crowded else None)


def _tick_room(names: Sequence[str]) -> int:
    """Pixels the class ticks may take under the plot when Plotly turns them upright."""
    return LABEL_COLUMN_PX * max((text_columns(short_label(n, LABEL_COLUMNS)) for n in names), default=0)


def _layout(fig: go.Figure, *, title: str, x_title: str, y_title: str, height: int | None = None) -> go.Figure:
    fig.update_layout(
        title=title, xaxis_title=x_title, yaxis_title=y_title, height=height,
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0),
        margin=dict(l=10, r=10, t=80, b=10),
        paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def _cell_text(matrix: np.ndarray, normalised: bool) -> np.ndarray:
    if normalised:
        return np.where(np.isnan(matrix), "–", np.char.mod("%.2f", np.nan_to_num(matrix)))
    return np.char.mod("%d", matrix)


def confusion_heatmap(matrix: np.ndarray, class_names: Sequence[str], *, normalised: bool,
                      title: str | None = None) -> go.Figure:
    """Annotated heatmap: true class down the side (first on top), predicted class along the bottom."""
    names = list(class_names)
    fig = go.Figure(go.Heatmap(
        z=matrix, x=class_values(names), y=class_values(names), text=_cell_text(matrix, normalised), texttemplate="%{text}",
        zmin=0, zmax=1 if normalised else None,  # no colorscale: the theme's (see the module's doc)
        colorbar=dict(title="share of row" if normalised else "samples"),
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
    ))
    default_title = "Confusion matrix, row-normalised (share of each true class)" if normalised \
        else "Confusion matrix (samples)"
    height = max(HEATMAP_MIN_PX, HEATMAP_ROW_PX * len(names) + 160) + _tick_room(names)
    _layout(fig, title=title or default_title, x_title="predicted class", y_title="true class", height=height)
    fig.update_xaxes(**_class_x_axis(names), side="bottom")
    fig.update_yaxes(**_class_axis(names), autorange="reversed")  # first class on top, as in a printed matrix
    return fig


def _curve_line(curve: Curve, position: int) -> dict:
    """Micro-average dashed and thicker; a class past the colorway's colours, which repeats one,
    dash-dotted, so it is not taken for the class of the same colour."""
    if curve.name == MICRO:
        return dict(dash="dash", width=3)
    return dict(width=2, dash="dashdot" if position >= COLORWAY_SIZE else None)


def _curve_trace(fig: go.Figure, curve: Curve, score_name: str, x_name: str, y_name: str, shape: str) -> None:
    fig.add_scatter(
        x=curve.x, y=curve.y, mode="lines", line_shape=shape,
        name=f"{class_label(curve.name)} ({score_name} {curve.score:.3f})",
        line=_curve_line(curve, len(fig.data)),
        hovertemplate=f"{x_name} %{{x:.3f}}<br>{y_name} %{{y:.3f}}<extra>{plot_text(curve.name)}</extra>",
    )


def _curves_legend(fig: go.Figure, corner: str) -> None:
    """A few curves: the legend in the plot's empty ``corner``. Many: under the plot, which grows
    to keep its square, since a tall legend inside would cover the curves."""
    entries = len(fig.data)
    if entries <= LEGEND_INSIDE_MAX:
        # This corner of a ROC (lower right) or PR (lower left) plot is where a useful curve never goes.
        x, anchor = (0.98, "right") if corner == "lower right" else (0.02, "left")
        fig.update_layout(legend=dict(orientation="v", x=x, xanchor=anchor, y=0.02, yanchor="bottom",
                                      bgcolor="rgba(128, 128, 128, 0.12)"))
        return
    rows = math.ceil(entries / LEGEND_PER_ROW)
    fig.update_layout(height=SQUARE_PX + LEGEND_ROW_PX * rows,
                      legend=dict(orientation="h", x=0, xanchor="left", y=-0.12, yanchor="top"))


def _operating_point(fig: go.Figure, x: float, y: float, label: str) -> None:
    fig.add_scatter(x=[x], y=[y], mode="markers", name=plot_text(label),
                    marker=dict(symbol="x", size=13, color=REFERENCE_GREY, line=dict(width=2)))


def roc_figure(curves: Sequence[Curve], operating_point: tuple[float, float, str] | None = None,
               title: str = "ROC curves (one class against the rest)") -> go.Figure:
    """ROC per class (and micro-average, dashed), AUC in each legend entry, the chance diagonal."""
    fig = go.Figure()
    # Curves first: each trace takes the next colour of the colorway, so a class gets
    # the same colour here as in the PR figure.
    for curve in curves:
        _curve_trace(fig, curve, "AUC", "false-positive rate", "true-positive rate", "linear")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance (AUC 0.5)",
                    line=dict(dash="dot", color=REFERENCE_GREY), hoverinfo="skip")
    if operating_point:
        _operating_point(fig, *operating_point)
    _layout(fig, title=title, x_title="false-positive rate (1 − specificity)",
            y_title="true-positive rate (sensitivity)", height=SQUARE_PX)
    _curves_legend(fig, "lower right")
    fig.update_xaxes(range=[-0.01, 1.01])
    fig.update_yaxes(range=[-0.01, 1.01])
    return fig


def pr_figure(curves: Sequence[Curve], operating_point: tuple[float, float, str] | None = None,
              title: str = "Precision-recall curves (one class against the rest)") -> go.Figure:
    """Precision-recall per class (and micro-average, dashed), average precision in each legend entry."""
    fig = go.Figure()
    for curve in curves:
        # Precision holds between the recall steps of a PR curve: draw steps, not slopes.
        _curve_trace(fig, curve, "AP", "recall", "precision", "vh")
    if operating_point:
        _operating_point(fig, *operating_point)
    _layout(fig, title=title, x_title="recall (sensitivity)",
            y_title="precision (PPV)", height=SQUARE_PX)
    _curves_legend(fig, "lower left")
    fig.update_xaxes(range=[-0.01, 1.01])
    fig.update_yaxes(range=[-0.01, 1.05])
    return fig


def grouped_bars(table: pd.DataFrame, columns: Sequence[str], *, title: str, y_title: str,
                 share: bool = True) -> go.Figure:
    """One group of bars per class (``table['class']``), one bar per column."""
    fig = go.Figure()
    for column in columns:
        fig.add_bar(x=class_values(table["class"]), y=table[column], name=plot_text(column),
                    hovertemplate=f"%{{x}}<br>{column} %{{y:{'.3f' if share else 'd'}}}<extra></extra>")
    names = list(table["class"])
    x_axis = _class_x_axis(names)
    # Turned ticks take their room from the plot: the figure grows by it, so the bars keep theirs.
    height = BARS_PX + (int(TURNED_TICK_ROOM * _tick_room(names)) if x_axis["tickangle"] else 0)
    _layout(fig, title=title, x_title="class", y_title=y_title, height=height)
    fig.update_layout(barmode="group")
    fig.update_xaxes(**x_axis)
    if share:
        fig.update_yaxes(range=[0, 1.05])
    return fig


def per_class_scores_figure(scores: pd.DataFrame) -> go.Figure:
    return grouped_bars(scores, ["precision", "recall", "F1"], title="Precision, recall and F1 per class",
                        y_title="score (0–1)")


def class_counts_figure(counts: pd.DataFrame) -> go.Figure:
    columns = [c for c in ("training", "validation") if c in counts.columns]
    return grouped_bars(counts, columns, title="Samples per class", y_title="samples", share=False)


def rates_figure(rates: pd.DataFrame) -> go.Figure:
    return grouped_bars(rates, RATE_NAMES, title="Sensitivity, specificity, PPV and NPV per class",
                        y_title="rate (0–1)")


def rates_radar(rates: pd.DataFrame) -> go.Figure:
    """Seed 002's radar: one closed outline per class over the four one-vs-rest rates."""
    fig = go.Figure()
    theta = list(RATE_NAMES) + [RATE_NAMES[0]]  # repeat the first axis to close the outline
    for row in rates.to_dict("records"):
        fig.add_scatterpolar(r=[row[name] for name in theta], theta=theta, name=class_label(row["class"]),
                             mode="lines+markers",
                             hovertemplate=f"%{{theta}} %{{r:.3f}}<extra>{plot_text(row['class'])}</extra>")
    fig.update_layout(
        title="Sensitivity, specificity, PPV and NPV by class (radar, 0–1)", height=SQUARE_PX,
        # The rate scale runs out at 45°, between two rate axes: along one of them its numbers
        # would sit on that axis's name.
        polar=dict(radialaxis=dict(range=[0, 1], tickformat=".1f", angle=45, tickangle=45),
                   bgcolor="rgba(0,0,0,0)"),
        legend=dict(title="class"), margin=dict(l=40, r=40, t=80, b=30), paper_bgcolor="rgba(0,0,0,0)",
    )
    return fig


def _bin_labels(bins: pd.DataFrame) -> list[str]:
    return [f"{lower:.1f}–{upper:.1f}" for lower, upper in zip(bins["lower"], bins["upper"])]


def bin_accuracy_figure(bins: pd.DataFrame) -> go.Figure:
    """Accuracy per bin of top probability; empty bins have no bar."""
    fig = go.Figure(go.Bar(x=_bin_labels(bins), y=bins["accuracy"], name="accuracy",
                           customdata=bins["count"], hovertemplate="%{y:.3f} of %{customdata} samples<extra></extra>"))
    _layout(fig, title="Accuracy per confidence bin", x_title="confidence (top probability)",
            y_title="accuracy (0–1)")
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.05])
    return fig


def bin_count_figure(bins: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Bar(x=_bin_labels(bins), y=bins["count"], name="samples",
                           hovertemplate="%{y} samples<extra></extra>"))
    _layout(fig, title="Samples per confidence bin", x_title="confidence (top probability)", y_title="samples")
    fig.update_xaxes(type="category")
    return fig


def reliability_figure(bins: pd.DataFrame, ece: float) -> go.Figure:
    """Accuracy against mean confidence per bin; on the diagonal the model is calibrated."""
    filled = bins[bins["count"] > 0]
    fig = go.Figure()
    # The model first: it takes the colorway's first colour, the strong one, as the bars beside it do.
    fig.add_scatter(x=filled["mean confidence"], y=filled["accuracy"], mode="lines+markers", name="model",
                    customdata=filled["count"], marker=dict(size=9),
                    hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} samples<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                    line=dict(dash="dot", color=REFERENCE_GREY), hoverinfo="skip")
    _layout(fig, title=f"Reliability diagram (expected calibration error {ece:.3f})",
            x_title="mean confidence in bin (0–1)", y_title="accuracy in bin (0–1)", height=SQUARE_PX)
    fig.update_xaxes(range=[0, 1.01])
    fig.update_yaxes(range=[0, 1.05])
    return fig


def threshold_figure(curve: pd.DataFrame, picked: Sequence[float]) -> go.Figure:
    """Share deferred and accuracy of the rest over thresholds, the user's picks as dotted lines."""
    fig = go.Figure()
    fig.add_scatter(x=curve["threshold"], y=curve["deferred"], mode="lines", name="share deferred",
                    hovertemplate="threshold %{x:.2f}<br>deferred %{y:.3f}<extra></extra>")
    fig.add_scatter(x=curve["threshold"], y=curve["accuracy of decided"], mode="lines", name="accuracy of the rest",
                    hovertemplate="threshold %{x:.2f}<br>accuracy %{y:.3f}<extra></extra>")
    for threshold in picked:
        fig.add_vline(x=threshold, line_dash="dot", line_color=REFERENCE_GREY,
                      annotation_text=f"{threshold:g}", annotation_position="top")
    _layout(fig, title="Deferring uncertain samples: share deferred and accuracy of the rest",
            x_title="threshold on top probability", y_title="share (0–1)")
    fig.update_yaxes(range=[0, 1.05])
    return fig


def binary_outcome_heatmap(outcome: BinaryOutcome, class_names: Sequence[str], threshold: float) -> go.Figure:
    # The threshold's class is in the slider's label above: a third of the page has no room for it here.
    return confusion_heatmap(outcome.matrix, class_names, normalised=False,
                             title=f"Confusion matrix at threshold {threshold:.2f} (samples)")
