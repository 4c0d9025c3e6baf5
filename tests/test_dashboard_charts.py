"""tiller.dashboard.charts: store DataFrames -> Plotly figures, no Streamlit involved."""

from __future__ import annotations

import colorsys

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from tiller.dashboard import charts
from tiller.dashboard.smoothing import Smoothing, ema


def long_metrics(run_id: str = "r1", epochs: int = 5, lrs: dict[int, float] | None = None) -> pd.DataFrame:
    rows = []
    for epoch in range(1, epochs + 1):
        values = {("train", "loss"): 1 / epoch, ("val", "loss"): 1.1 / epoch, ("train", "accuracy"): 0.5,
                  ("val", "accuracy"): 0.4, ("", "lr"): (lrs or {}).get(epoch, 1e-3)}
        rows += [{"run_id": run_id, "epoch": epoch, "split": s, "name": n, "value": v} for (s, n), v in values.items()]
    return pd.DataFrame(rows)


def versions(*changes: tuple[int, float, str, str]) -> pd.DataFrame:
    """Version 1 at epoch 1 with lr 1e-3, then one version per (epoch, lr, source, reason)."""
    rows = [{"version": 1, "epoch": 1, "config": {"learning_rate": 1e-3}, "diff": {}, "source": "cli", "reason": ""}]
    lr = 1e-3
    for number, (epoch, new_lr, source, reason) in enumerate(changes, start=2):
        rows.append({"version": number, "epoch": epoch, "config": {"learning_rate": new_lr},
                     "diff": {"learning_rate": [lr, new_lr]}, "source": source, "reason": reason})
        lr = new_lr
    return pd.DataFrame(rows)


def test_train_val_figure_draws_training_as_markers_and_validation_as_a_line():
    fig = charts.train_val_figure(long_metrics(), "loss")
    train, val = fig.data
    assert (train.name, train.mode) == ("Training loss", "markers")
    assert (val.name, val.mode) == ("Validation loss", "lines")
    assert list(train.x) == [1, 2, 3, 4, 5] and val.y[1] == pytest.approx(0.55)
    assert fig.layout.xaxis.title.text == "epoch" and fig.layout.yaxis.title.text == "loss"
    assert fig.layout.title.text == "Training and validation loss"


def contrast(colour: str, background: str) -> float:
    """WCAG contrast ratio of two #rrggbb colours."""
    def luminance(hex_colour: str) -> float:
        channels = [int(hex_colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted([luminance(colour), luminance(background)], reverse=True)
    return (high + 0.05) / (low + 0.05)


def hue_degrees(colour: str) -> float:
    red, green, blue = (int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return colorsys.rgb_to_hsv(red, green, blue)[0] * 360


def test_training_and_validation_colours_differ_and_read_on_light_and_dark_pages():
    train, val = charts.train_val_figure(long_metrics(), "loss").data
    dots, line = train.marker.color, val.line.color
    assert abs(hue_degrees(dots) - hue_degrees(line)) > 90  # not two blues
    for colour in (dots, line):
        assert contrast(colour, "#ffffff") >= 3 and contrast(colour, "#0e1117") >= 3  # Streamlit light, dark


def test_single_validation_point_is_still_visible():
    fig = charts.train_val_figure(long_metrics(epochs=1), "accuracy")
    assert fig.data[1].mode == "lines+markers"


def test_lr_figure_marks_each_config_change_at_its_epoch():
    metrics = long_metrics(epochs=6, lrs={4: 1e-4, 5: 1e-4, 6: 1e-4})
    fig = charts.lr_figure(metrics, versions((4, 1e-4, "user", "plateau <b>now</b>")))
    assert [shape.x0 for shape in fig.layout.shapes] == [4]
    marker = next(trace for trace in fig.data if trace.name == "config change")
    assert list(marker.x) == [4] and list(marker.y) == [1e-4]
    hover = marker.hovertext[0]
    assert "from user" in hover and "learning_rate: 0.001 → 0.0001" in hover
    assert "&lt;b&gt;now&lt;/b&gt;" in hover  # a reason is shown as text, never as markup
    assert fig.layout.annotations[0].text == "v2 user"
    assert fig.layout.yaxis.type == "log" and list(fig.layout.yaxis.tickvals) == [1e-4, 1e-3]


def test_lr_figure_without_changes_has_no_markers():
    fig = charts.lr_figure(long_metrics(), versions())
    assert not fig.layout.shapes and [t.name for t in fig.data] == ["learning rate"]


def test_lr_figure_marks_a_change_before_its_epoch_is_logged_as_pending():
    fig = charts.lr_figure(long_metrics(epochs=3), versions((2, 1e-4, "user", ""), (4, 1e-2, "llm", "")))
    assert [shape.x0 for shape in fig.layout.shapes] == [2, 4]
    applied = next(trace for trace in fig.data if trace.name == "config change")
    pending = next(trace for trace in fig.data if trace.name == "pending change")
    assert list(applied.x) == [2] and applied.marker.symbol == "diamond"
    assert list(pending.x) == [4] and list(pending.y) == [1e-2] and pending.marker.symbol == "diamond-open"
    assert "pending: in force from epoch 4, not logged yet" in pending.hovertext[0]
    # A dotted step joins the last logged rate to the one the change sets.
    step = next(trace for trace in fig.data if trace.line.dash == "dot")
    assert list(step.x) == [3, 4] and list(step.y) == [1e-3, 1e-2] and step.showlegend is False
    assert fig.layout.xaxis.range[1] > 4  # the pending change is in view


def test_run_page_charts_share_the_epoch_range_of_a_pending_change():
    metrics, changes = long_metrics(epochs=5), versions((6, 1e-2, "llm", ""))
    epochs = charts.run_epoch_range(metrics, changes)
    assert epochs == (1, 6)
    figures = [charts.train_val_figure(metrics, "loss", x_range=epochs),
               charts.train_val_figure(metrics, "accuracy", x_range=epochs),
               charts.lr_figure(metrics, changes, x_range=epochs)]
    ranges = {tuple(fig.layout.xaxis.range) for fig in figures}
    assert len(ranges) == 1 and charts.lr_figure(metrics, changes).layout.xaxis.range == figures[0].layout.xaxis.range
    low, high = ranges.pop()
    assert low < 1 and 6 < high < 7
    assert charts.run_epoch_range(metrics, versions((3, 1e-2, "llm", ""))) == (1, 5)


def test_lr_figure_draws_each_change_as_plotly_add_vline_would():
    # The lines and labels are built as plain dicts (faster); they must stay what add_vline draws.
    fig = charts.lr_figure(long_metrics(epochs=6), versions((4, 1e-4, "user", "plateau")))
    reference = go.Figure().add_vline(x=4, line_dash="dot", line_color=charts.MARKER_GREY, annotation_text="v2 user",
                                      annotation_position="top", annotation_hovertext=fig.layout.annotations[0].hovertext,
                                      annotation_font_color=charts.MARKER_GREY)
    assert fig.layout.shapes[0].to_plotly_json() == reference.layout.shapes[0].to_plotly_json()
    assert fig.layout.annotations[0].to_plotly_json() == reference.layout.annotations[0].to_plotly_json()


def test_run_page_curves_of_a_long_step_loop_are_reduced_keeping_their_peaks():
    lr = step_metrics("a", 20_000).assign(split="", name="lr", value=1e-3)
    lr.loc[lr["epoch"] > 10_000, "value"] = 1e-4
    metrics = pd.concat([step_metrics("a", 20_000), step_metrics("a", 20_000).assign(split="train"), lr])
    loss = charts.train_val_figure(metrics, "loss", max_points=2_000)
    assert [len(trace.x) for trace in loss.data] == [2_000, 2_000]
    assert max(loss.data[1].y) == 5.0 and (loss.data[1].x[0], loss.data[1].x[-1]) == (1, 20_000)
    rates = charts.lr_figure(metrics, versions(), max_points=2_000)
    assert len(rates.data[0].x) <= 2_000 and list(rates.layout.yaxis.tickvals) == [1e-4, 1e-3]
    assert charts.run_curves_note(metrics, max_points=2_000) == (
        "Showing at most 2,000 of 20,000 points per curve: min/max per bucket keeps every peak.")
    assert charts.run_curves_note(long_metrics()) == ""


def test_compare_figure_has_one_line_per_run_in_order():
    metrics = pd.concat([long_metrics("a", epochs=3), long_metrics("b", epochs=5)])
    fig = charts.compare_figure(metrics, "val", "loss", {"b": "run B", "a": "run A"}).figure
    assert [t.name for t in fig.data] == ["run B", "run A"]
    assert [len(t.x) for t in fig.data] == [5, 3]
    assert fig.layout.title.text == "Validation loss by run"
    assert fig.layout.yaxis.title.text == "validation loss"


def test_empty_metrics_give_empty_figures():
    empty = long_metrics().iloc[0:0]
    assert all(len(t.x) == 0 for t in charts.train_val_figure(empty, "loss").data)
    assert len(charts.lr_figure(empty, pd.DataFrame()).data[0].x) == 0


@pytest.mark.parametrize(
    ("split", "name", "title"),
    [("val", "accuracy", "Validation accuracy"), ("", "lr", "Learning rate"), ("train", "f1", "Training f1")],
)
def test_metric_title(split, name, title):
    assert charts.metric_title(split, name) == title


# ------------------------------------------------ compare: smoothing, points, changes


def step_metrics(run_id: str, steps: int, start: float = 1.0) -> pd.DataFrame:
    """A user's own loop: one validation loss per step, a spike in the middle."""
    epochs = np.arange(1, steps + 1)
    values = start / np.sqrt(epochs) + 0.01 * np.sin(epochs)
    values[steps // 2] = 5.0
    return pd.DataFrame({"run_id": run_id, "epoch": epochs, "split": "val", "name": "loss", "value": values})


def test_compare_figure_draws_the_raw_line_faint_under_the_smoothed_one():
    metrics = pd.concat([long_metrics("a", epochs=6), long_metrics("b", epochs=6)])
    chart = charts.compare_figure(metrics, "val", "loss", {"a": "run A", "b": "run B"},
                                  smoothing=Smoothing("ema", weight=0.6))
    raw_a, smooth_a, raw_b, smooth_b = chart.figure.data
    for raw, smooth in ((raw_a, smooth_a), (raw_b, smooth_b)):
        assert raw.opacity < 0.5 and raw.showlegend is False and raw.hoverinfo == "skip"
        assert raw.line.color == smooth.line.color and raw.legendgroup == smooth.legendgroup
        assert smooth.opacity is None and smooth.showlegend is not False
    assert list(raw_a.y) == pytest.approx([1.1 / e for e in range(1, 7)])
    assert list(smooth_a.y) == pytest.approx(ema(np.array(raw_a.y), 0.6))
    assert raw_a.line.color != raw_b.line.color
    assert [t.name for t in chart.figure.data if t.showlegend is not False] == ["run A", "run B"]
    assert chart.figure.layout.title.text == "Validation loss by run, EMA 0.6"
    assert chart.note == ""


def test_compare_figure_without_smoothing_draws_one_line_per_run():
    chart = charts.compare_figure(long_metrics("a"), "val", "loss", {"a": "run A"})
    assert [t.name for t in chart.figure.data] == ["run A"]


def test_compare_figure_keeps_each_line_within_the_point_budget_and_says_so():
    metrics = pd.concat([step_metrics("a", 20_000), step_metrics("b", 500)])
    chart = charts.compare_figure(metrics, "val", "loss", {"a": "long", "b": "short"},
                                  smoothing=Smoothing("window", window=20), max_points=2_000)
    lengths = [len(t.x) for t in chart.figure.data]
    assert max(lengths) <= 2_000 and lengths[2:] == [500, 500]  # the short run is drawn whole
    long_raw = chart.figure.data[0]
    assert max(long_raw.y) == 5.0 and long_raw.x[0] == 1 and long_raw.x[-1] == 20_000  # the spike survives
    assert chart.note == "Showing at most 2,000 of 20,000 points per run: min/max per bucket keeps every peak."
    assert chart.figure.data[0].mode == "lines"  # thousands of markers would hide the line


def test_compare_figure_reduces_with_lttb_when_asked():
    chart = charts.compare_figure(step_metrics("a", 5_000), "val", "loss", {"a": "A"}, max_points=300, method="lttb")
    assert len(chart.figure.data[0].x) == 300 and "LTTB" in chart.note


def test_compare_figure_marks_config_changes_on_each_runs_line():
    metrics = pd.concat([long_metrics("a", epochs=6), long_metrics("b", epochs=6)])
    changes = {"a": versions((4, 1e-4, "user", "plateau <b>now</b>")), "b": versions()}
    chart = charts.compare_figure(metrics, "val", "loss", {"a": "run A", "b": "run B"}, versions=changes)
    markers = [t for t in chart.figure.data if t.mode == "markers"]
    assert len(markers) == 1  # run B never changed its config
    marker, line_a = markers[0], chart.figure.data[0]
    assert list(marker.x) == [4] and list(marker.y) == pytest.approx([1.1 / 4])  # on run A's line
    assert marker.marker.color == line_a.line.color and marker.marker.symbol == "diamond"
    assert marker.legendgroup == "a" and marker.showlegend is False
    hover = marker.hovertext[0]
    assert hover.startswith("run A<br>") and "from user" in hover and "learning_rate: 0.001 → 0.0001" in hover
    assert "&lt;b&gt;now&lt;/b&gt;" in hover


def test_compare_figure_puts_a_pending_change_on_the_runs_last_point():
    metrics = long_metrics("a", epochs=5)
    chart = charts.compare_figure(metrics, "val", "loss", {"a": "A"},
                                  versions={"a": versions((3, 1e-4, "user", ""), (6, 1e-2, "llm", ""))})
    line, applied, pending = chart.figure.data
    assert list(applied.x) == [3] and applied.marker.symbol == "diamond"
    assert list(pending.x) == [5] and list(pending.y) == pytest.approx([1.1 / 5])  # not past the line's end
    assert pending.marker.symbol == "diamond-open" and pending.marker.color == line.line.color
    assert "pending: in force from epoch 6, not logged yet" in pending.hovertext[0]


def test_compare_figure_places_a_change_between_logged_steps_on_the_line():
    metrics = long_metrics("a", epochs=6)
    metrics = metrics[metrics["epoch"] != 4]
    chart = charts.compare_figure(metrics, "val", "loss", {"a": "A"}, versions={"a": versions((4, 1e-4, "llm", ""))})
    marker = chart.figure.data[-1]
    assert list(marker.y) == pytest.approx([(1.1 / 3 + 1.1 / 5) / 2])
