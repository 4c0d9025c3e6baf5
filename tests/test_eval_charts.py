"""The Evaluation page's figures, built alone: named axes, and class names of any script and length."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from tiller.dashboard import eval_charts as ec
from tiller.dashboard import eval_metrics as em
from tiller.dashboard.eval_charts import class_label
from tiller.dashboard.labels import short_label, text_columns

LONG = "A very long class name that goes on and on: Pseudomonas aeruginosa resistant strain"
NAMES = ["猫", "狗", "鸟", "قطة", "🐶 dog", LONG]
FIFTEEN = [f"第{n}类肿瘤" for n in range(15)]


def predictions(classes: int, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), labels


def every_figure(names: list[str]) -> dict[str, go.Figure]:
    """Each figure the Evaluation page draws from stored predictions, as eval_views builds them."""
    probs, labels = predictions(len(names))
    matrix = em.confusion(probs, labels)
    rates = em.one_vs_rest_rates(matrix, names)
    bins = em.confidence_bins(probs, labels)
    binary_probs, binary_labels = predictions(2)
    outcome = em.binary_at_threshold(binary_probs, binary_labels, 0.5)
    return {
        "confusion": ec.confusion_heatmap(matrix, names, normalised=False),
        "confusion normalised": ec.confusion_heatmap(em.row_normalised(matrix), names, normalised=True),
        "roc": ec.roc_figure(em.roc_curves(probs, labels, names)),
        "pr": ec.pr_figure(em.pr_curves(probs, labels, names)),
        "binary confusion": ec.binary_outcome_heatmap(outcome, names[:2], 0.5),
        "scores": ec.per_class_scores_figure(em.per_class_scores(probs, labels, names)),
        "counts": ec.class_counts_figure(em.class_counts(labels, names, [50] * len(names))),
        "rates": ec.rates_figure(rates),
        "bin accuracy": ec.bin_accuracy_figure(bins),
        "bin count": ec.bin_count_figure(bins),
        "reliability": ec.reliability_figure(bins, em.expected_calibration_error(bins)),
        "deferral": ec.threshold_figure(em.threshold_scenarios(probs, labels, np.linspace(0, 1, 11)), (0.5,)),
    }


# ------------------------------------------------------------------ labels


def test_short_names_are_kept_whole():
    for name in ["猫", "🐶 dog", "قطة", "0", "Pseudomonas aeruginosa"]:
        assert short_label(name, ec.LABEL_COLUMNS) == name


def test_long_names_are_cut_by_the_room_they_take():
    cut = short_label(LONG, ec.LABEL_COLUMNS)
    assert cut.endswith("…") and LONG.startswith(cut[:-1])
    assert text_columns(cut) <= ec.LABEL_COLUMNS
    # A Chinese character takes two columns: fewer of them fit than Latin letters.
    assert short_label("肺" * 20, ec.LABEL_COLUMNS) == "肺" * 11 + "…"
    assert text_columns("肺腺癌") == 6 and text_columns("🐶 dog") == 6


def test_labels_are_escaped_for_plotly_which_reads_them_as_html():
    assert class_label("<unk>") == "&lt;unk&gt;"


# ------------------------------------------------------------------- axes


@pytest.mark.parametrize("name", list(every_figure(NAMES)))
def test_every_chart_names_both_axes(name):
    layout = every_figure(NAMES)[name].layout
    assert layout.xaxis.title.text and layout.yaxis.title.text


def test_confusion_matrix_axes_say_true_and_predicted_class():
    layout = every_figure(NAMES)["confusion"].layout
    assert (layout.xaxis.title.text, layout.yaxis.title.text) == ("predicted class", "true class")


def test_the_rate_radar_says_its_scale_and_keeps_its_numbers_off_the_rate_axes():
    fig = ec.rates_radar(em.one_vs_rest_rates(em.confusion(*predictions(3)), NAMES[:3]))
    assert "0–1" in fig.layout.title.text
    assert fig.layout.polar.radialaxis.angle % 90 != 0  # the four rate axes lie at 0, 90, 180 and 270 degrees


# ------------------------------------------------------- class names on charts


def test_class_ticks_show_short_names_and_the_data_keeps_the_full_ones():
    figures = every_figure(NAMES)
    heatmap = figures["confusion"]
    assert list(heatmap.data[0].x) == NAMES == list(heatmap.data[0].y)  # what a hover's %{x} and %{y} show
    for axis in (heatmap.layout.xaxis, heatmap.layout.yaxis):
        assert list(axis.tickvals) == NAMES
        assert list(axis.ticktext) == [class_label(name) for name in NAMES]
        assert "…" in axis.ticktext[-1]
    bars = figures["scores"]
    assert list(bars.data[0].x) == NAMES and list(bars.layout.xaxis.ticktext) == [class_label(n) for n in NAMES]


def test_crowded_class_ticks_are_turned_and_a_few_short_ones_are_left_to_plotly():
    assert every_figure(NAMES)["scores"].layout.xaxis.tickangle == ec.TURNED_TICK_DEGREES
    assert every_figure(FIFTEEN)["confusion"].layout.xaxis.tickangle == ec.TURNED_TICK_DEGREES
    assert every_figure([str(d) for d in range(10)])["scores"].layout.xaxis.tickangle is None


def test_the_heatmap_grows_with_the_room_its_labels_take():
    short = every_figure(["a", "b", "c"])["confusion"].layout.height
    assert every_figure(["a" * 20, "b", "c"])["confusion"].layout.height > short


def test_legend_entries_are_short_and_hovers_name_the_class_in_full():
    roc = every_figure(NAMES)["roc"]
    long_curve = next(trace for trace in roc.data if trace.name.startswith("A very long"))
    assert long_curve.name.startswith(short_label(LONG, ec.LABEL_COLUMNS) + " (AUC ")
    assert LONG in long_curve.hovertemplate
    radar = ec.rates_radar(em.one_vs_rest_rates(em.confusion(*predictions(6)), NAMES))
    assert radar.data[-1].name == class_label(LONG) and LONG in radar.data[-1].hovertemplate


def test_a_few_curves_keep_their_legend_inside_and_many_put_it_under_a_taller_plot():
    few = every_figure(["a", "b", "c"])["roc"].layout
    assert few.legend.y >= 0 and few.height == ec.SQUARE_PX
    many = every_figure(FIFTEEN)["roc"].layout
    assert many.legend.y < 0 and many.legend.orientation == "h" and many.height > ec.SQUARE_PX


def test_classes_past_the_colorway_get_their_own_dash():
    roc = every_figure(FIFTEEN)["roc"]
    dashes = [trace.line.dash for trace in roc.data[:15]]
    assert dashes[:ec.COLORWAY_SIZE] == [None] * ec.COLORWAY_SIZE
    assert set(dashes[ec.COLORWAY_SIZE:]) == {"dashdot"}


# ------------------------------------------------------------------ colours


def test_heatmaps_take_the_theme_colours():
    # No colorscale of their own: Streamlit's theme gives one for light and one for dark pages.
    for name in ("confusion", "confusion normalised", "binary confusion"):
        assert every_figure(NAMES)[name].data[0].colorscale is None


def test_the_model_takes_the_first_colour_in_the_reliability_diagram():
    assert every_figure(NAMES)["reliability"].data[0].name == "model"


def test_bars_under_turned_ticks_grow_by_the_room_the_ticks_take():
    level = every_figure(["a", "b", "c"])["scores"].layout.height
    assert level == ec.BARS_PX
    assert every_figure(NAMES)["scores"].layout.height > level
