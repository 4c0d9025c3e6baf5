"""eval_metrics against scikit-learn and against hand computations on small known inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score, classification_report, cohen_kappa_score, precision_recall_curve, roc_auc_score,
    roc_curve,
)

from tiller.dashboard import eval_metrics as em

NAMES = ["正常", "良性", "恶性"]

# A hand-made 3-class case: label, predicted class (the top probability), top probability.
#   true 0: predicted 0, 0, 0, 1    true 1: predicted 1, 1, 2    true 2: predicted 2, 2, 0
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
PROBS = np.array([
    [0.90, 0.05, 0.05],
    [0.80, 0.10, 0.10],
    [0.60, 0.30, 0.10],
    [0.30, 0.50, 0.20],
    [0.20, 0.70, 0.10],
    [0.025, 0.95, 0.025],
    [0.30, 0.30, 0.40],
    [0.05, 0.10, 0.85],
    [0.20, 0.25, 0.55],
    [0.65, 0.05, 0.30],
])
CONFUSION = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 2]])


def random_case(n=300, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, labels


# ------------------------------------------------------------ confusion and rates


def test_confusion_raw_and_row_normalised():
    assert em.confusion(PROBS, LABELS).tolist() == CONFUSION.tolist()
    normalised = em.row_normalised(CONFUSION)
    assert normalised[0].tolist() == [0.75, 0.25, 0.0]
    assert normalised[2] == pytest.approx([1 / 3, 0, 2 / 3])


def test_row_of_an_absent_class_is_nan_not_zero():
    matrix = np.array([[2, 0], [0, 0]])
    normalised = em.row_normalised(matrix)
    assert normalised[0].tolist() == [1.0, 0.0] and np.isnan(normalised[1]).all()


def test_one_vs_rest_rates_by_hand():
    rates = em.one_vs_rest_rates(CONFUSION, NAMES).set_index("class")
    # Class 0: TP 3, FN 1, FP 1, TN 5.  Classes 1 and 2: TP 2, FN 1, FP 1, TN 6.
    assert rates.loc["正常"].tolist() == pytest.approx([3 / 4, 5 / 6, 3 / 4, 5 / 6])
    assert rates.loc["良性"].tolist() == pytest.approx([2 / 3, 6 / 7, 2 / 3, 6 / 7])
    assert rates.loc["恶性"].tolist() == pytest.approx([2 / 3, 6 / 7, 2 / 3, 6 / 7])
    assert list(rates.columns) == list(em.RATE_NAMES)


def test_rates_of_zero_over_zero_are_nan():
    # Class 1 never occurs and is never predicted: its sensitivity and PPV are 0/0.
    rates = em.one_vs_rest_rates(np.array([[3, 0], [0, 0]]), ["a", "b"]).set_index("class")
    assert np.isnan(rates.loc["b", "sensitivity"]) and np.isnan(rates.loc["b", "PPV"])
    assert rates.loc["b", "specificity"] == 1.0 and rates.loc["b", "NPV"] == 1.0


# ------------------------------------------------------------ report and summary


def test_classification_report_matches_sklearn():
    table = em.classification_report_table(PROBS, LABELS, NAMES)
    expected = classification_report(LABELS, PROBS.argmax(axis=1), target_names=NAMES, output_dict=True)
    for name in NAMES + ["macro avg", "weighted avg"]:
        assert table.loc[name].tolist() == pytest.approx(list(expected[name].values()))
    assert table.loc["accuracy", "f1-score"] == expected["accuracy"] == 0.7
    assert table.loc["accuracy", "support"] == 10 and np.isnan(table.loc["accuracy", "precision"])


def test_summary_matches_sklearn():
    probs, labels = random_case()
    truth = em.one_hot(labels, 4)
    summary = em.summary(probs, labels, "multiclass")
    assert list(summary) == ["accuracy", "micro ROC AUC", "macro ROC AUC", "micro average precision"]
    assert summary["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
    assert summary["micro ROC AUC"] == pytest.approx(roc_auc_score(truth, probs, average="micro"))
    assert summary["macro ROC AUC"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert summary["micro average precision"] == pytest.approx(average_precision_score(truth, probs, average="micro"))


def test_absent_class_is_skipped_from_macro_auc_and_curves_and_named():
    probs, labels = random_case(classes=4)
    labels[labels == 3] = 0  # no validation sample of class 3 any more
    names = ["a", "b", "c", "d"]
    summary = em.summary(probs, labels, "multiclass")
    expected_macro = np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(3)])
    assert summary["macro ROC AUC"] == pytest.approx(expected_macro)
    assert [curve.name for curve in em.roc_curves(probs, labels, names)] == ["a", "b", "c", em.MICRO]
    assert "no validation samples of d" in em.unscorable_note(labels, names)


def test_every_class_scorable_has_no_note():
    _, labels = random_case()
    assert em.unscorable_note(labels, ["a", "b", "c", "d"]) is None


def test_single_class_validation_has_no_curves_and_nan_aucs():
    labels = np.zeros(5, dtype=int)
    probs = np.tile([0.8, 0.1, 0.1], (5, 1))
    assert em.roc_curves(probs, labels, NAMES) == [] and em.pr_curves(probs, labels, NAMES) == []
    summary = em.summary(probs, labels, "multiclass")
    assert summary["accuracy"] == 1.0 and np.isnan(summary["macro ROC AUC"]) and np.isnan(summary["micro ROC AUC"])
    assert "every validation sample is 正常" in em.unscorable_note(labels, NAMES)
    assert np.isnan(em.quadratic_kappa(probs, labels))


# ------------------------------------------------------------ curves


def test_roc_and_pr_curves_match_sklearn_per_class_and_micro():
    probs, labels = random_case()
    truth = em.one_hot(labels, 4)
    rocs = em.roc_curves(probs, labels, ["a", "b", "c", "d"])
    prs = em.pr_curves(probs, labels, ["a", "b", "c", "d"])
    for c in range(4):
        fpr, tpr, _ = roc_curve(truth[:, c], probs[:, c])
        assert np.array_equal(rocs[c].x, fpr) and np.array_equal(rocs[c].y, tpr)
        assert rocs[c].score == pytest.approx(roc_auc_score(truth[:, c], probs[:, c]))
        precision, recall, _ = precision_recall_curve(truth[:, c], probs[:, c], drop_intermediate=True)
        assert np.array_equal(prs[c].x, recall) and np.array_equal(prs[c].y, precision)
        assert prs[c].score == pytest.approx(average_precision_score(truth[:, c], probs[:, c]))
    assert rocs[-1].name == prs[-1].name == em.MICRO
    assert rocs[-1].score == pytest.approx(roc_auc_score(truth, probs, average="micro"))
    assert prs[-1].score == pytest.approx(average_precision_score(truth, probs, average="micro"))


def test_binary_forms_use_the_positive_class():
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    probs = np.column_stack([1 - p, p])
    roc = em.positive_roc(probs, labels, ["neg", "pos"])
    assert roc.name == "pos" and roc.score == pytest.approx(roc_auc_score(labels, p)) == pytest.approx(5 / 6)
    assert em.positive_pr(probs, labels, ["neg", "pos"]).score == pytest.approx(average_precision_score(labels, p))
    summary = em.summary(probs, labels, "binary")
    assert list(summary) == ["accuracy", "ROC AUC", "average precision"]
    assert summary["ROC AUC"] == pytest.approx(5 / 6) and summary["accuracy"] == pytest.approx(3 / 5)
    assert em.positive_roc(probs[:2], labels[:2], ["neg", "pos"]) is None  # no positive sample


@pytest.mark.parametrize(
    ("threshold", "matrix", "precision", "recall", "specificity"),
    [
        (0.5, [[1, 1], [1, 2]], 2 / 3, 2 / 3, 1 / 2),
        (0.65, [[2, 0], [1, 2]], 1.0, 2 / 3, 1.0),
        (0.95, [[2, 0], [3, 0]], np.nan, 0.0, 1.0),  # nothing called positive: precision is 0/0
    ],
)
def test_binary_at_threshold_by_hand(threshold, matrix, precision, recall, specificity):
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.7, 0.9])
    outcome = em.binary_at_threshold(np.column_stack([1 - p, p]), labels, threshold)
    assert outcome.matrix.tolist() == matrix
    assert outcome.precision == pytest.approx(precision, nan_ok=True)
    assert outcome.recall == pytest.approx(recall) and outcome.specificity == pytest.approx(specificity)
    assert outcome.accuracy == pytest.approx(np.trace(matrix) / 5)


# ------------------------------------------------------------ per class


def test_per_class_scores_and_counts():
    scores = em.per_class_scores(PROBS, LABELS, NAMES).set_index("class")
    assert scores.loc["正常", ["precision", "recall"]].tolist() == pytest.approx([3 / 4, 3 / 4])
    assert scores["support"].tolist() == [4, 3, 3]
    counts = em.class_counts(LABELS, NAMES, [40, 30, 20])
    assert counts.to_dict("list") == {"class": NAMES, "training": [40, 30, 20], "validation": [4, 3, 3]}
    assert list(em.class_counts(LABELS, NAMES, None).columns) == ["class", "validation"]


# ------------------------------------------------------------ clinical utility


def test_quadratic_kappa_by_hand_and_sklearn():
    # Weights (i - j)^2 / 4; observed weighted disagreement 1.5, expected (from the margins) 3.45.
    assert em.quadratic_kappa(PROBS, LABELS) == pytest.approx(1 - 1.5 / 3.45)
    assert em.quadratic_kappa(PROBS, LABELS) == pytest.approx(
        cohen_kappa_score(LABELS, PROBS.argmax(axis=1), weights="quadratic"))


def test_severity_weighted_error_default_is_ordinal_distance():
    assert em.default_severity(3).tolist() == [[0, 1, 2], [1, 0, 1], [2, 1, 0]]
    # Errors 0->1 (1), 1->2 (1), 2->0 (2): 4 over 10 samples x worst severity 2.
    assert em.severity_weighted_error(CONFUSION, em.default_severity(3)) == pytest.approx(0.2)


def test_severity_weighted_error_custom_matrix_ignores_the_diagonal():
    # Seed 002's matrix: ones, missing class 1 (as 0 or 2) costs 2. Its diagonal of 1 never counts.
    severity = np.ones((3, 3))
    severity[1, 0] = severity[1, 2] = 2.0
    assert em.severity_weighted_error(CONFUSION, severity) == pytest.approx((1 + 2 + 1) / (10 * 2))


@pytest.mark.parametrize("severity", [np.ones((2, 2)), -em.default_severity(3), np.full((3, 3), np.nan)])
def test_severity_matrix_is_checked(severity):
    with pytest.raises(ValueError):
        em.severity_weighted_error(CONFUSION, severity)


def test_severity_all_zero_is_undefined():
    assert np.isnan(em.severity_weighted_error(CONFUSION, np.zeros((3, 3))))


def test_class_detection_rate_and_mean_confidence():
    found = em.class_detection(PROBS, LABELS, 2)
    assert found.samples == 3 and found.rate == pytest.approx(2 / 3)
    assert found.mean_confidence == pytest.approx((0.85 + 0.55 + 0.30) / 3)
    absent = em.class_detection(PROBS[:4], LABELS[:4], 2)
    assert absent.samples == 0 and np.isnan(absent.rate)


def test_threshold_scenarios_by_hand():
    table = em.threshold_scenarios(PROBS, LABELS, [0.3, 0.5, 0.7, 0.99])
    assert table["deferred"].tolist() == pytest.approx([0.0, 0.1, 0.5, 1.0])
    assert table["decided"].tolist() == [10, 9, 5, 0]
    assert table["accuracy of decided"].tolist()[:3] == pytest.approx([0.7, 7 / 9, 1.0])
    assert np.isnan(table["accuracy of decided"].iloc[3])  # nothing decided: no accuracy, not 0


# ------------------------------------------------------------ confidence


def test_confidence_bins_and_ece_by_hand():
    bins = em.confidence_bins(PROBS, LABELS)
    assert bins["count"].tolist() == [0, 0, 0, 0, 1, 2, 2, 1, 2, 2]
    assert bins["accuracy"].tolist()[4:] == pytest.approx([0, 0.5, 0.5, 1, 1, 1])
    assert bins["mean confidence"].tolist()[4:] == pytest.approx([0.4, 0.525, 0.625, 0.7, 0.825, 0.925])
    assert np.isnan(bins["accuracy"].iloc[0])
    # (1 x 0.4 + 2 x 0.025 + 2 x 0.125 + 1 x 0.3 + 2 x 0.175 + 2 x 0.075) / 10
    assert em.expected_calibration_error(bins) == pytest.approx(0.15)


def test_top_probability_of_one_lands_in_the_last_bin():
    bins = em.confidence_bins(np.array([[1.0, 0.0]]), np.array([0]))
    assert bins["count"].iloc[-1] == 1 and em.expected_calibration_error(bins) == 0.0


def test_hard_samples():
    ids = [f"img{i}.png" for i in range(10)]
    unsure_right = em.low_confidence_correct(PROBS, LABELS, ids, NAMES, k=2)
    assert unsure_right["sample"].tolist() == ["img8.png", "img2.png"]
    assert unsure_right["confidence"].tolist() == pytest.approx([0.55, 0.60])
    sure_wrong = em.high_confidence_wrong(PROBS, LABELS, ids, NAMES, k=2)
    assert sure_wrong.drop(columns="confidence").to_dict("list") == {
        "index": [9, 3], "sample": ["img9.png", "img3.png"], "true": ["恶性", "正常"], "predicted": ["正常", "良性"]}
    assert sure_wrong["confidence"].tolist() == pytest.approx([0.65, 0.50])
    assert em.high_confidence_wrong(PROBS[:3], LABELS[:3], ids, NAMES, k=5).empty
