"""User text in Plotly figures is escaped: Plotly draws <a href>, <b>, <span style>… in trace
names, ticks, titles, annotations and hovers, so a run or class name must not bring its own.

Every figure the dashboard draws is built with hostile names, and every string of the
figure's JSON (category values included: a hover repeats them) is searched for their tags.
The browser test (test_untrusted_browser.py) checks the drawn Compare page too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from tiller.dashboard import charts, eval_charts as ec, eval_metrics as em, hyperparameter_charts as hc, probe_panels
from tiller.dashboard.labels import plot_label, plot_text
from tiller.dashboard.smoothing import Smoothing
from tiller.store.predictions import Predictions
from tests.test_dashboard_charts import long_metrics
from tests.test_eval_charts import predictions

HOSTILE = '<a href="http://x">x</a><b style="font-size:120px">big</b>'
LIVE_TAGS = ("<a ", "<a>", "</a>", "<b style", "<span", "<img")


def strings(value) -> list[str]:
    """Every string inside a figure's JSON."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, (list, tuple, np.ndarray)):
        return [s for v in value for s in strings(v)]
    return []


def live_tags(fig: go.Figure) -> list[str]:
    return [s for s in strings(fig.to_plotly_json()) if any(tag in s for tag in LIVE_TAGS)]


def hostile_metrics() -> pd.DataFrame:
    metrics = pd.concat([long_metrics("r1"), long_metrics("r2")])
    extra = metrics[metrics["name"] == "loss"].assign(name=HOSTILE)  # a loop of one's own names its metrics
    return pd.concat([metrics, extra], ignore_index=True)


def hostile_versions() -> pd.DataFrame:
    return pd.DataFrame([
        {"version": 1, "epoch": 1, "config": {"learning_rate": 1e-3}, "diff": {}, "source": "cli", "reason": ""},
        {"version": 2, "epoch": 3, "config": {"learning_rate": 1e-2}, "diff": {HOSTILE: [1e-3, HOSTILE]},
         "source": HOSTILE, "reason": HOSTILE},
    ])


def run_figures() -> dict[str, go.Figure]:
    metrics, versions = hostile_metrics(), hostile_versions()
    labels = {"r1": HOSTILE, "r2": HOSTILE + " 2"}
    return {
        "train/val": charts.train_val_figure(metrics, HOSTILE),
        "lr": charts.lr_figure(metrics, versions),
        "compare": charts.compare_figure(metrics, "val", "loss", labels, versions={"r1": versions}).figure,
        "compare smoothed": charts.compare_figure(metrics, "", HOSTILE, labels, versions={"r1": versions},
                                                  smoothing=Smoothing(method="ema")).figure,
    }


def hyperparameter_figures() -> dict[str, go.Figure]:
    base = {"learning_rate": 1e-3, "batch_size": 32}
    configs = {"r1": {**base, "optimizer": HOSTILE, HOSTILE: 1},
               "r2": {**base, "learning_rate": 1e-1, "optimizer": "SGD", HOSTILE: 2},
               "r3": {**base, "learning_rate": 1e-4, "optimizer": "Adam", HOSTILE: 3}}
    table = hc.hyperparameter_table(configs)
    assert {"optimizer", HOSTILE} <= set(table.columns)
    best = pd.Series({"r1": 0.3, "r2": 0.2, "r3": 0.25})
    labels = {"r1": HOSTILE, "r2": "two", "r3": "three"}
    return {
        "parallel": hc.parallel_figure(table, best, ("val", HOSTILE)),
        "scatter by choice": hc.hyperparameter_scatter(table, best, ("val", "loss"), "optimizer", labels),
        "scatter by key": hc.hyperparameter_scatter(table, best, ("val", "loss"), HOSTILE, labels),
        "scatter coloured": hc.hyperparameter_scatter(table, best, ("val", "loss"), "learning_rate", labels,
                                                      colour_key="optimizer"),
    }


def evaluation_figures() -> dict[str, go.Figure]:
    names = [HOSTILE, "cat", HOSTILE + " 3"]
    probs, labels = predictions(len(names))
    matrix = em.confusion(probs, labels)
    binary_probs, binary_labels = predictions(2)
    outcome = em.binary_at_threshold(binary_probs, binary_labels, 0.5)
    positive_roc = em.positive_roc(binary_probs, binary_labels, names[:2])
    scored = Predictions(epoch=1, probs=probs, labels=labels, sample_ids=[HOSTILE] * len(labels),
                         class_names=names, task="multiclass")
    indices = np.arange(len(labels))
    groups, order = probe_panels.point_groups(scored, indices, by_class=True)
    return {
        "confusion": ec.confusion_heatmap(matrix, names, normalised=False),
        "roc": ec.roc_figure(em.roc_curves(probs, labels, names)),
        "pr": ec.pr_figure(em.pr_curves(probs, labels, names)),
        "binary confusion": ec.binary_outcome_heatmap(outcome, names[:2], 0.5),
        "binary roc": ec.roc_figure([positive_roc], (0.1, 0.9, HOSTILE), title=f"ROC of {ec.class_label(HOSTILE)}"),
        "scores": ec.per_class_scores_figure(em.per_class_scores(probs, labels, names)),
        "counts": ec.class_counts_figure(em.class_counts(labels, names, [50] * len(names))),
        "rates": ec.rates_figure(em.one_vs_rest_rates(matrix, names)),
        "radar": ec.rates_radar(em.one_vs_rest_rates(matrix, names)),
        "features": probe_panels.scatter_figure(np.zeros((len(labels), 2)), groups, order,
                                                probe_panels.point_hover(scored, indices), "PCA"),
    }


ALL = {**run_figures(), **hyperparameter_figures(), **evaluation_figures()}


@pytest.mark.parametrize("name", list(ALL))
def test_no_user_tag_reaches_a_figure(name):
    fig = ALL[name]
    assert any("&lt;a href" in s for s in strings(fig.to_plotly_json())), "the hostile name is not in the figure"
    assert live_tags(fig) == []


def test_plot_text_escapes_tags_and_keeps_quotes():
    assert plot_text('<b>"x" & y</b>') == '&lt;b&gt;"x" &amp; y&lt;/b&gt;'
    assert plot_label("<" * 40, 5) == "&lt;&lt;&lt;&lt;…"  # cut first, then escaped: no half entity
