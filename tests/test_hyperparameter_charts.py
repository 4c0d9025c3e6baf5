"""Hyperparameter views of the Compare page: which keys qualify, best values, the figures; and the
Compare page's notes where there is nothing (or not enough) to compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.colors
import pytest
from streamlit.testing.v1 import AppTest

from tiller.dashboard import hyperparameter_charts as charts
from tests.test_dashboard import PAGES, TIMEOUT_S, chart_spec, seed_run, texts


def configs(*overrides: dict) -> dict[str, dict]:
    base = {"learning_rate": 1e-3, "batch_size": 32, "optimizer": "Adam", "nesterov": False, "seed": 42,
            "model_note": "", "metrics": ["accuracy"]}
    return {f"r{i}": {**base, **o} for i, o in enumerate(overrides, start=1)}


def test_hyperparameter_table_offers_differing_numeric_bool_and_choice_keys_only():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-2, "optimizer": "SGD", "nesterov": True, "model_note": "first", "metrics": ["f1"]},
        {"learning_rate": 1e-4, "model_note": "second"},
        {"batch_size": 64},
    ))
    # seed is the same everywhere; model_note is bookkeeping training ignores; metrics is a list.
    assert list(table.columns) == ["learning_rate", "batch_size", "optimizer", "nesterov"]
    assert list(table.index) == ["r1", "r2", "r3"]
    assert table["optimizer"].tolist() == ["SGD", "Adam", "Adam"]


def test_hyperparameter_table_leaves_out_keys_some_runs_lack_and_name_like_text():
    runs = configs(*({"run_name": f"trial {i}"} for i in range(13)))
    runs["r1"]["dropout"] = 0.5
    assert charts.hyperparameter_table(runs).columns.empty


def test_best_values_take_the_lowest_loss_and_the_highest_accuracy():
    metrics = pd.DataFrame([{"run_id": run_id, "epoch": epoch, "split": "val", "name": name,
                             "value": 1.1 / epoch if name == "loss" else 0.4}
                            for run_id, epochs in (("a", 3), ("b", 5)) for epoch in range(1, epochs + 1)
                            for name in ("loss", "accuracy")])
    assert charts.best_values(metrics, "val", "loss").to_dict() == pytest.approx({"a": 1.1 / 3, "b": 1.1 / 5})
    assert charts.best_values(metrics, "val", "accuracy").to_dict() == pytest.approx({"a": 0.4, "b": 0.4})


def test_parallel_figure_has_one_dimension_per_key_then_the_metric():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-2, "optimizer": "SGD", "nesterov": True}, {"learning_rate": 1e-4}, {"batch_size": 64}))
    best = pd.Series({"r1": 0.9, "r2": 0.7, "r3": 0.8})
    fig = charts.parallel_figure(table, best, ("val", "accuracy"))
    parcoords = fig.data[0]
    assert parcoords.type == "parcoords"
    labels = [d.label for d in parcoords.dimensions]
    assert labels == ["learning_rate (log)", "batch_size", "optimizer", "nesterov", "best validation accuracy"]
    lr, batch, optimizer, nesterov, score = parcoords.dimensions
    # Drawn worst first, so the best run's line lies over the others: r2 (0.7), r3 (0.8), r1 (0.9).
    assert list(lr.values) == pytest.approx([-4, -3, -2]) and list(lr.ticktext) == ["0.0001", "0.001", "0.01"]
    assert list(batch.values) == [32, 64, 32]
    assert list(optimizer.ticktext) == ["Adam", "SGD"] and list(optimizer.values) == [0, 0, 1]
    assert list(nesterov.ticktext) == ["false", "true"] and list(nesterov.values) == [0, 0, 1]
    assert list(score.values) == [0.7, 0.8, 0.9] and list(parcoords.line.color) == [0.7, 0.8, 0.9]
    assert score.tickformat == ".4~g"  # ticks read 0.9028, not 0.902778
    # Every value lies inside its axis, never on its end (the plot's edge, where a line is half cut
    # off); the ticks are the settings tried, and round scores that enclose every run's.
    for dimension in parcoords.dimensions:
        low, high = dimension.range
        assert low < min(dimension.values) and max(dimension.values) < high
    assert list(batch.tickvals) == [32, 64] and list(batch.ticktext) == ["32", "64"]
    assert score.tickvals[0] <= 0.7 and 0.9 <= score.tickvals[-1]
    assert parcoords.rangefont.color == "rgba(0, 0, 0, 0)"  # the padded ends' own labels would read 29.4
    assert parcoords.line.reversescale is False  # accuracy rises: the strong end is the best run
    # A grey line on every axis: Plotly's own are black at 25 %, lost on a dark page.
    assert [shape.x0 for shape in fig.layout.shapes] == [0, 0.25, 0.5, 0.75, 1]


def test_parallel_axis_ticks_values_tried_only_when_their_labels_fit():
    table = charts.hyperparameter_table(configs({"weight_decay": 0.0}, {"weight_decay": 0.001},
                                                {"weight_decay": 0.0012}, {"weight_decay": 0.05}))
    fig = charts.parallel_figure(table, pd.Series({"r1": 0.8, "r2": 0.9, "r3": 0.85, "r4": 0.7}),
                                 ("val", "accuracy"))
    weight_decay = fig.data[0].dimensions[0]
    assert weight_decay.tickvals is None  # 0.001 and 0.0012 would print over each other: round ticks


def test_parallel_figure_draws_the_lowest_loss_last_with_the_scale_reversed():
    table = charts.hyperparameter_table(configs({"batch_size": 16}, {"batch_size": 64}, {"batch_size": 128}))
    fig = charts.parallel_figure(table, pd.Series({"r1": 0.2, "r2": 0.5, "r3": 0.3}), ("val", "loss"))
    batch, score = fig.data[0].dimensions
    assert list(score.values) == [0.5, 0.3, 0.2] and list(batch.values) == [64, 128, 16]
    assert fig.data[0].line.reversescale is True


def contrast(colour: str, background: str) -> float:
    """WCAG contrast ratio of two colours."""
    def luminance(hex_colour: str) -> float:
        channels = np.array(plotly.colors.hex_to_rgb(hex_colour)) / 255
        linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])

    light, dark = sorted((luminance(colour), luminance(background)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("theme, page", [("light", "#ffffff"), ("dark", "#0e1117")])
def test_parallel_lines_read_on_their_page_and_better_runs_stand_out_more(theme, page):
    table = charts.hyperparameter_table(configs({"batch_size": 16}, {"batch_size": 64}))
    fig = charts.parallel_figure(table, pd.Series({"r1": 0.8, "r2": 0.9}), ("val", "accuracy"), theme=theme)
    (_, worst), (_, best) = fig.data[0].line.colorscale
    # Plotly draws these lines 1 px wide, anti-aliased to about half their colour: even the
    # worst run's line must stay visible, and the best one clearly stronger than it.
    assert contrast(worst, page) >= 2.5
    assert contrast(best, page) >= 9 and contrast(best, page) >= 2 * contrast(worst, page)


def test_hyperparameter_scatter_colours_runs_as_on_the_curves():
    table = charts.hyperparameter_table(configs({"optimizer": "SGD"}, {}, {"optimizer": "AdamW"}))
    best = pd.Series({"r1": 0.3, "r2": 0.2, "r3": 0.25})
    labels = {"r1": "one", "r2": "two", "r3": "three"}
    fig = charts.hyperparameter_scatter(table, best, ("val", "loss"), "optimizer", labels)
    assert [t.name for t in fig.data] == ["one", "two", "three"]
    assert [t.marker.color for t in fig.data] == list(charts.RUN_COLOURS[:3])
    assert [t.x[0] for t in fig.data] == [2, 0, 1]  # Adam, AdamW, SGD as ticks 0, 1, 2
    assert list(fig.layout.xaxis.ticktext) == ["Adam", "AdamW", "SGD"]
    assert "optimizer: SGD" in fig.data[0].hovertext[0]


def test_hyperparameter_scatter_colours_by_a_second_key():
    table = charts.hyperparameter_table(configs(
        {"learning_rate": 1e-1, "nesterov": True}, {"learning_rate": 1e-3}, {"learning_rate": 1e-4}))
    best = pd.Series({"r1": 0.3, "r2": 0.2, "r3": 0.25})
    fig = charts.hyperparameter_scatter(table, best, ("val", "loss"), "learning_rate", {}, colour_key="nesterov")
    (points,) = fig.data
    assert list(points.marker.color) == [1, 0, 0]
    assert list(points.marker.colorbar.ticktext) == ["false", "true"]
    assert fig.layout.xaxis.type == "log"  # learning rates spanning 1000x
    # Coloured by those learning rates, the colours follow their logarithm: 1e-3 sits between the
    # others, not in one colour with 1e-4 at the far end from 1e-1.
    fig = charts.hyperparameter_scatter(table, best, ("val", "loss"), "nesterov", {}, colour_key="learning_rate")
    (points,) = fig.data
    assert list(points.marker.color) == pytest.approx([-1, -3, -4])
    assert list(points.marker.colorbar.ticktext) == ["0.0001", "0.001", "0.1"]
    assert points.marker.colorbar.title.text == "learning_rate (log)"


def labelled_ticks(axis) -> list[float]:
    """The tick values Plotly will label on a linear axis set by tick0 and dtick within its range."""
    low, high = axis.range
    first = axis.tick0 + np.ceil((low - axis.tick0) / axis.dtick - 1e-9) * axis.dtick
    return list(np.arange(first, high + 1e-12, axis.dtick))


@pytest.mark.parametrize("scores", [
    [0.9028, 0.975],  # the demo's two runs: Plotly's own ticks stopped at 0.97, under the 0.975 point
    [0.931, 0.936, 0.958, 0.962],
    [0.25],  # one run
    [0.8, 0.8],  # a tie
    [1.4, 0.35, 0.07],
])
def test_hyperparameter_scatter_puts_every_point_inside_its_labelled_ticks(scores):
    runs = configs(*({"batch_size": 16 * (i + 1)} for i in range(len(scores))))
    table = charts.hyperparameter_table(runs) if len(scores) > 1 else pd.DataFrame(
        {"batch_size": [16]}, index=pd.Index(["r1"], name="run_id"))
    best = pd.Series(dict(zip(table.index, scores)))
    fig = charts.hyperparameter_scatter(table, best, ("val", "accuracy"), "batch_size", {})
    ticks = labelled_ticks(fig.layout.yaxis)
    assert len(ticks) >= 3
    assert ticks[0] <= min(scores) and max(scores) <= ticks[-1]
    assert fig.layout.yaxis.range[0] < ticks[0] and ticks[-1] < fig.layout.yaxis.range[1]  # room for the markers


def test_hyperparameter_scatter_labels_few_points_with_their_score_and_ticks_each_setting():
    table = charts.hyperparameter_table(configs({"batch_size": 64}, {}))
    fig = charts.hyperparameter_scatter(table, pd.Series({"r1": 0.975, "r2": 0.90278}), ("val", "accuracy"),
                                        "batch_size", {"r1": "one", "r2": "two"})
    assert [t.text[0] for t in fig.data] == ["0.975", "0.9028"] and all("text" in t.mode for t in fig.data)
    # A numeric setting tried with two values is labelled at those two, with room either side.
    assert list(fig.layout.xaxis.tickvals) == [32, 64]
    assert fig.layout.xaxis.range[0] < 32 and 64 < fig.layout.xaxis.range[1]
    assert fig.layout.legend.orientation == "h"  # above the plot, not a column eating its width


def test_runs_sharing_a_setting_label_their_scores_apart():
    table = charts.hyperparameter_table(configs({"optimizer": "SGD"}, {}, {}))  # r2 and r3 both Adam
    best = pd.Series({"r1": 0.8, "r2": 0.94, "r3": 0.93})
    fig = charts.hyperparameter_scatter(table, best, ("val", "accuracy"), "optimizer", {})
    assert [t.textposition for t in fig.data] == ["top center", "top center", "bottom center"]


def test_hyperparameter_scatter_drops_the_labels_when_they_would_collide():
    runs = configs(*({"batch_size": 8 + i} for i in range(charts.LABELLED_UP_TO + 1)))
    table = charts.hyperparameter_table(runs)
    best = pd.Series({run_id: 0.5 + i / 100 for i, run_id in enumerate(table.index)})
    fig = charts.hyperparameter_scatter(table, best, ("val", "accuracy"), "batch_size", {}, colour_key=None)
    assert all(t.mode == "markers" for t in fig.data)
    xs = labelled_ticks(fig.layout.xaxis)  # many values: round steps, not a tick per value
    assert xs[0] <= 8 and 8 + charts.LABELLED_UP_TO <= xs[-1]


# ------------------------------------------------------------ Compare page notes


def compare_page() -> AppTest:
    return AppTest.from_file(str(PAGES / "compare.py"), default_timeout=TIMEOUT_S).run()


def headings(at: AppTest) -> list[str]:
    return [h.value for h in at.subheader]


def test_compare_page_with_the_only_run_says_to_train_another(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="only")
    at = compare_page()
    assert not at.exception
    assert "This is the only run so far" in texts(at.info) and "tiller train --set" in texts(at.info)
    assert headings(at) == ["Final metrics"]  # no empty sections that need a second run
    assert [c.key for c in at.get("plotly_chart")] == ["compare-chart"]


def test_compare_page_with_one_of_two_runs_chosen_says_to_pick_another(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="one")
    seed_run(runs_store, "mlp_20260101_000002", name="two", config={"learning_rate": 0.01})
    at = compare_page()
    at.multiselect(key="compare_runs").set_value(["mlp_20260101_000001"]).run()
    assert not at.exception
    captions = texts(at.caption)
    assert "Pick two or more runs to see their settings" in captions and "evaluations side by side" in captions
    assert headings(at) == ["Final metrics"]


def test_compare_page_with_no_metric_yet_says_so_once(runs_store):
    for run_id, lr in (("mlp_20260101_000001", 0.001), ("mlp_20260101_000002", 0.01)):
        runs_store.create_run(model="mlp", dataset="digits", name=run_id, run_id=run_id)
        runs_store.add_config_version(run_id, {"learning_rate": lr}, source="cli", epoch=1)
    at = compare_page()
    assert not at.exception
    curves, evaluation = (i.value for i in at.info)
    assert "have not logged a metric yet" in curves and "no stored validation predictions yet" in evaluation
    # No section of its own to say the same again: the hyperparameters need a metric too.
    assert "Hyperparameters" not in headings(at)
    assert list(at.dataframe[0].value["key"]) == ["learning_rate"]  # the configs still compare


def test_compare_page_names_the_differences_no_axis_can_show(runs_store):
    seed_run(runs_store, "mlp_20260101_000001", name="one", config={"metrics": ["accuracy"]})
    seed_run(runs_store, "mlp_20260101_000002", name="two", config={"metrics": ["accuracy", "f1"]})
    at = compare_page()
    assert not at.exception
    assert "differ only in `metrics`, which no axis can show" in texts(at.info)


@pytest.fixture
def dark_theme():
    """The dashboard started with the dark theme (as ``STREAMLIT_THEME_BASE=dark`` does)."""
    from streamlit import config

    before = config.get_option("theme.base")
    config.set_option("theme.base", "dark")
    yield
    config.set_option("theme.base", before)


def test_compare_page_parallel_lines_follow_the_dashboard_theme(runs_store, dark_theme):
    seed_run(runs_store, "mlp_20260101_000001", name="one")
    seed_run(runs_store, "mlp_20260101_000002", name="two", config={"learning_rate": 0.01})
    at = compare_page()
    assert not at.exception
    line = chart_spec(at, "compare-parcoords")["data"][0]["line"]
    assert line["colorscale"] == charts.LINE_SCALES["dark"]
    assert "the stronger its blue, the better the run (higher is better)" in texts(at.caption)
