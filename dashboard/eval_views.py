"""The Evaluation page's numbers and figures for one run at one epoch, cached.

Both the Evaluation page and the Compare page's side-by-side panels draw from
these. Each view takes the runs folder only to key its cache, as data.py does:
two folders (or two tests) never share entries; data.predictions reads that
same folder. An epoch's predictions never change, so nothing here expires.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from tiller.dashboard import data, eval_charts, eval_metrics

CACHED_VIEWS = 64  # per cached function: a few runs x epochs x user inputs
THRESHOLD_GRID = np.linspace(0.0, 1.0, 101)  # the deferral curve, in steps of 0.01
cached = st.cache_data(show_spinner=False, max_entries=CACHED_VIEWS)


def best_epoch(run_id: str, epochs: list[int]) -> int:
    """Of ``epochs``, the one with the highest validation accuracy (the earliest on a tie); else the latest."""
    metrics = data.metrics([run_id])
    accuracy = metrics[(metrics["split"] == "val") & (metrics["name"] == "accuracy")
                       & metrics["epoch"].isin(epochs)].sort_values("epoch")
    if accuracy.empty:
        return epochs[-1]
    return int(accuracy.loc[accuracy["value"].idxmax(), "epoch"])


def _predictions(run_id: str, epoch: int):
    return data.predictions(run_id, epoch)


@cached
def report_view(folder: str, run_id: str, epoch: int):
    p = _predictions(run_id, epoch)
    return (eval_metrics.classification_report_table(p.probs, p.labels, p.class_names),
            eval_metrics.summary(p.probs, p.labels, p.task), eval_metrics.unscorable_note(p.labels, p.class_names))


@cached
def confusion_view(folder: str, run_id: str, epoch: int):
    p = _predictions(run_id, epoch)
    matrix = eval_metrics.confusion(p.probs, p.labels)
    return (eval_charts.confusion_heatmap(matrix, p.class_names, normalised=False),
            eval_charts.confusion_heatmap(eval_metrics.row_normalised(matrix), p.class_names, normalised=True))


@cached
def curves_view(folder: str, run_id: str, epoch: int):
    """ROC and PR figures of a multiclass run, or None when no class has a curve."""
    p = _predictions(run_id, epoch)
    roc = eval_metrics.roc_curves(p.probs, p.labels, p.class_names)
    if not roc:
        return None
    return eval_charts.roc_figure(roc), eval_charts.pr_figure(eval_metrics.pr_curves(p.probs, p.labels, p.class_names))


@cached
def binary_view(folder: str, run_id: str, epoch: int, threshold: float):
    """The outcome at ``threshold``, its heatmap, and the ROC and PR with that operating point (None if no curve)."""
    p = _predictions(run_id, epoch)
    outcome = eval_metrics.binary_at_threshold(p.probs, p.labels, threshold)
    heatmap = eval_charts.binary_outcome_heatmap(outcome, p.class_names, threshold)
    roc, pr = (eval_metrics.positive_roc(p.probs, p.labels, p.class_names),
               eval_metrics.positive_pr(p.probs, p.labels, p.class_names))
    if roc is None:
        return outcome, heatmap, None
    label, positive = f"threshold {threshold:.2f}", eval_charts.class_label(p.class_names[1])
    return outcome, heatmap, (
        eval_charts.roc_figure([roc], (outcome.false_positive_rate, outcome.recall, label),
                               title=f"ROC curve of {positive}"),
        eval_charts.pr_figure([pr], (outcome.recall, outcome.precision, label),
                              title=f"Precision-recall curve of {positive}"))


@cached
def per_class_view(folder: str, run_id: str, epoch: int):
    p = _predictions(run_id, epoch)
    scores = eval_metrics.per_class_scores(p.probs, p.labels, p.class_names)
    counts = eval_metrics.class_counts(p.labels, p.class_names, p.train_counts)
    rates = eval_metrics.one_vs_rest_rates(eval_metrics.confusion(p.probs, p.labels), p.class_names)
    figures = (eval_charts.per_class_scores_figure(scores), eval_charts.class_counts_figure(counts),
               eval_charts.rates_figure(rates), eval_charts.rates_radar(rates))
    return scores, counts, rates, figures


@cached
def kappa_and_deferral(folder: str, run_id: str, epoch: int):
    p = _predictions(run_id, epoch)
    return (eval_metrics.quadratic_kappa(p.probs, p.labels),
            eval_metrics.threshold_scenarios(p.probs, p.labels, THRESHOLD_GRID))


@cached
def severity_error(folder: str, run_id: str, epoch: int, severity: np.ndarray) -> float:
    p = _predictions(run_id, epoch)
    return eval_metrics.severity_weighted_error(eval_metrics.confusion(p.probs, p.labels), severity)


@cached
def detection(folder: str, run_id: str, epoch: int, class_index: int) -> eval_metrics.Detection:
    p = _predictions(run_id, epoch)
    return eval_metrics.class_detection(p.probs, p.labels, class_index)


@cached
def scenarios(folder: str, run_id: str, epoch: int, thresholds: tuple[float, ...]) -> pd.DataFrame:
    p = _predictions(run_id, epoch)
    return eval_metrics.threshold_scenarios(p.probs, p.labels, thresholds)


@cached
def confidence_view(folder: str, run_id: str, epoch: int):
    p = _predictions(run_id, epoch)
    bins = eval_metrics.confidence_bins(p.probs, p.labels)
    ece = eval_metrics.expected_calibration_error(bins)
    return bins, ece, (eval_charts.bin_accuracy_figure(bins), eval_charts.bin_count_figure(bins),
                       eval_charts.reliability_figure(bins, ece))


@cached
def hard_samples(folder: str, run_id: str, epoch: int, k: int):
    p = _predictions(run_id, epoch)
    args = (p.probs, p.labels, p.sample_ids, p.class_names, k)
    return eval_metrics.low_confidence_correct(*args), eval_metrics.high_confidence_wrong(*args)
