"""The numbers of the Evaluation page: seed 002's evaluation views, from one epoch's predictions.

Pure numpy, pandas and scikit-learn, no Streamlit, so each number is testable alone
and the page only caches and draws. Inputs are what ``store.Predictions`` holds:
``probs`` (samples, classes) with rows summing to 1, integer ``labels`` (samples,)
and ``class_names``. The prediction is the most probable class; for binary runs
(two columns, ``[1 - p, p]``) class 1 is the positive class.

A number that is not defined (0/0, a curve for a class with no validation samples)
is NaN or left out, never 0: a 0 would read as a measured failure.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    average_precision_score, classification_report, cohen_kappa_score, confusion_matrix, precision_recall_curve,
    precision_recall_fscore_support, roc_auc_score, roc_curve,
)

MICRO = "micro-average"
CONFIDENCE_BINS = 10
# Seed 002's decision scenarios: low-risk screening, routine diagnosis, high-risk confirmation.
DEFAULT_THRESHOLDS = (0.3, 0.5, 0.7)
RATE_NAMES = ("sensitivity", "specificity", "PPV", "NPV")


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    # Not sklearn's label_binarize: it returns a single column for two classes.
    return np.eye(n_classes, dtype=int)[labels]


def confidence(probs: np.ndarray) -> np.ndarray:
    """The probability of the predicted class, per sample."""
    return probs.max(axis=1)


def _ratio(numerator, denominator) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


# ------------------------------------------------------------ which classes


def scorable_classes(labels: np.ndarray, n_classes: int) -> list[int]:
    """Classes a one-vs-rest curve can score: validation samples both in and outside the class."""
    counts = np.bincount(labels, minlength=n_classes)
    return [c for c in range(n_classes) if 0 < counts[c] < len(labels)]


def unscorable_note(labels: np.ndarray, class_names: Sequence[str]) -> str | None:
    """Why some classes have no ROC or PR curve and no part in the macro AUC; None if all have."""
    counts = np.bincount(labels, minlength=len(class_names))
    absent = [name for name, n in zip(class_names, counts) if n == 0]
    only = [name for name, n in zip(class_names, counts) if n == len(labels)]
    reasons = []
    if absent:
        reasons.append(f"no validation samples of {', '.join(absent)}")
    if only:
        reasons.append(f"every validation sample is {only[0]}, so no sample is outside it")
    if not reasons:
        return None
    return ("Left out of the one-vs-rest curves and the macro average (a curve needs validation samples "
            f"in and outside its class): {'; '.join(reasons)}.")


# ------------------------------------------------------------ report and summary


def classification_report_table(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """scikit-learn's classification report, one row per class then accuracy, macro and weighted averages."""
    report = classification_report(
        labels, probs.argmax(axis=1), labels=range(len(class_names)), target_names=list(class_names),
        output_dict=True, zero_division=np.nan,
    )
    rows = {}
    for name, row in report.items():
        # Accuracy is a single number in the report; it has no precision or recall of its own.
        rows[name] = row if isinstance(row, dict) else {
            "precision": np.nan, "recall": np.nan, "f1-score": row, "support": float(len(labels))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["support"] = table["support"].astype(int)
    return table


def summary(probs: np.ndarray, labels: np.ndarray, task: str) -> dict[str, float]:
    """Headline numbers in display order: accuracy, then AUC and AP (positive class only when binary)."""
    accuracy = float(np.mean(probs.argmax(axis=1) == labels))
    scorable = scorable_classes(labels, probs.shape[1])
    if task == "binary":
        positive = 1 in scorable
        return {
            "accuracy": accuracy,
            "ROC AUC": roc_auc_score(labels == 1, probs[:, 1]) if positive else np.nan,
            "average precision": average_precision_score(labels == 1, probs[:, 1]) if positive else np.nan,
        }
    truth = one_hot(labels, probs.shape[1])
    # Micro: every (sample, class) pair is one decision; a class absent from validation
    # still adds its negatives. Macro: the mean over classes that have a curve.
    return {
        "accuracy": accuracy,
        "micro ROC AUC": roc_auc_score(truth.ravel(), probs.ravel()) if scorable else np.nan,
        "macro ROC AUC": float(np.mean([roc_auc_score(truth[:, c], probs[:, c]) for c in scorable]))
        if scorable else np.nan,
        "micro average precision": average_precision_score(truth.ravel(), probs.ravel()) if scorable else np.nan,
    }


# ------------------------------------------------------------ confusion


def confusion(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    return confusion_matrix(labels, probs.argmax(axis=1), labels=range(probs.shape[1]))


def row_normalised(matrix: np.ndarray) -> np.ndarray:
    """Each row as shares of its true class (the recall on the diagonal); NaN rows for absent classes."""
    return _ratio(matrix, matrix.sum(axis=1, keepdims=True))


def one_vs_rest_rates(matrix: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Sensitivity, specificity, PPV and NPV per class, each class against all the others."""
    total = matrix.sum()
    tp = np.diag(matrix)
    fn = matrix.sum(axis=1) - tp
    fp = matrix.sum(axis=0) - tp
    tn = total - tp - fn - fp
    return pd.DataFrame({
        "class": list(class_names),
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "PPV": _ratio(tp, tp + fp),
        "NPV": _ratio(tn, tn + fn),
    })


# ------------------------------------------------------------ curves


@dataclass(frozen=True)
class Curve:
    """One ROC or PR curve of one class (or the micro-average)."""

    name: str
    x: np.ndarray  # false-positive rate (ROC) or recall (PR)
    y: np.ndarray  # true-positive rate (ROC) or precision (PR)
    score: float  # area under the ROC, or average precision


def _roc(name: str, truth: np.ndarray, scores: np.ndarray) -> Curve:
    fpr, tpr, _ = roc_curve(truth, scores)
    return Curve(name, fpr, tpr, float(roc_auc_score(truth, scores)))


def _pr(name: str, truth: np.ndarray, scores: np.ndarray) -> Curve:
    # drop_intermediate keeps the corners only: the same curve in far fewer points.
    precision, recall, _ = precision_recall_curve(truth, scores, drop_intermediate=True)
    return Curve(name, recall, precision, float(average_precision_score(truth, scores)))


def _one_vs_rest(curve, probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> list[Curve]:
    scorable = scorable_classes(labels, len(class_names))
    if not scorable:
        return []
    truth = one_hot(labels, len(class_names))
    per_class = [curve(class_names[c], truth[:, c], probs[:, c]) for c in scorable]
    return per_class + [curve(MICRO, truth.ravel(), probs.ravel())]


def roc_curves(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> list[Curve]:
    """One-vs-rest ROC of each class that has one, then the micro-average; [] if none has."""
    return _one_vs_rest(_roc, probs, labels, class_names)


def pr_curves(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> list[Curve]:
    """One-vs-rest precision-recall curve of each class that has one, then the micro-average."""
    return _one_vs_rest(_pr, probs, labels, class_names)


def positive_roc(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Curve | None:
    """Binary runs: the ROC of the positive class (class 1), or None without both classes in validation."""
    return _roc(class_names[1], labels == 1, probs[:, 1]) if 1 in scorable_classes(labels, 2) else None


def positive_pr(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Curve | None:
    """Binary runs: the precision-recall curve of the positive class (class 1), or None."""
    return _pr(class_names[1], labels == 1, probs[:, 1]) if 1 in scorable_classes(labels, 2) else None


class BinaryOutcome(NamedTuple):
    matrix: np.ndarray  # 2x2 counts, rows = true (negative, positive), columns = predicted
    precision: float
    recall: float
    specificity: float
    accuracy: float
    false_positive_rate: float


def binary_at_threshold(probs: np.ndarray, labels: np.ndarray, threshold: float) -> BinaryOutcome:
    """Binary runs: the outcome of calling a sample positive when p(positive) >= ``threshold``."""
    matrix = confusion_matrix(labels, (probs[:, 1] >= threshold).astype(int), labels=[0, 1])
    (tn, fp), (fn, tp) = matrix
    return BinaryOutcome(
        matrix=matrix,
        precision=float(_ratio(tp, tp + fp)),
        recall=float(_ratio(tp, tp + fn)),
        specificity=float(_ratio(tn, tn + fp)),
        accuracy=float(_ratio(tp + tn, matrix.sum())),
        false_positive_rate=float(_ratio(fp, tn + fp)),
    )


# ------------------------------------------------------------ per class


def per_class_scores(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support per class."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, probs.argmax(axis=1), labels=range(len(class_names)), zero_division=np.nan)
    return pd.DataFrame({"class": list(class_names), "precision": precision, "recall": recall, "F1": f1,
                         "support": support})


def class_counts(labels: np.ndarray, class_names: Sequence[str], train_counts: Sequence[int] | None) -> pd.DataFrame:
    """Samples per class in validation, and in training when the run recorded it."""
    counts = pd.DataFrame({"class": list(class_names)})
    if train_counts is not None:
        counts["training"] = list(train_counts)
    counts["validation"] = np.bincount(labels, minlength=len(class_names))
    return counts


# ------------------------------------------------------------ clinical utility


def quadratic_kappa(probs: np.ndarray, labels: np.ndarray) -> float:
    """Cohen's kappa with quadratic weights (a miss by two classes costs four times a miss by one)."""
    with warnings.catch_warnings():
        # Undefined when truth and prediction hold one and the same class: NaN, said by the page.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(cohen_kappa_score(labels, probs.argmax(axis=1), labels=range(probs.shape[1]),
                                       weights="quadratic"))


def default_severity(n_classes: int) -> np.ndarray:
    """Cost of predicting class j for true class i: the ordinal distance |i - j|."""
    index = np.arange(n_classes)
    return np.abs(index[:, None] - index[None, :]).astype(float)


def severity_weighted_error(matrix: np.ndarray, severity: np.ndarray) -> float:
    """Sum of counts x severity over N x the largest severity: 0 = no errors, 1 = every sample worst-case wrong."""
    severity = np.asarray(severity, dtype=float)
    if severity.shape != matrix.shape:
        raise ValueError(f"the severity matrix must be {matrix.shape[0]}x{matrix.shape[1]}, not "
                         f"{'x'.join(map(str, severity.shape))}")
    if not np.all(np.isfinite(severity)) or np.any(severity < 0):
        raise ValueError("every severity must be a number >= 0")
    severity = severity.copy()
    np.fill_diagonal(severity, 0.0)  # a correct prediction is never an error, whatever was typed there
    worst = severity.max()
    return float(_ratio((matrix * severity).sum(), matrix.sum() * worst))


class Detection(NamedTuple):
    samples: int  # validation samples of the class
    rate: float  # share of them predicted as the class (recall)
    mean_confidence: float  # mean probability the model gave the class on them


def class_detection(probs: np.ndarray, labels: np.ndarray, class_index: int) -> Detection:
    """Seed 002's 'malignant case detection rate' and mean confidence, for any class."""
    mine = labels == class_index
    if not mine.any():
        return Detection(0, np.nan, np.nan)
    return Detection(int(mine.sum()), float(np.mean(probs[mine].argmax(axis=1) == class_index)),
                     float(np.mean(probs[mine, class_index])))


def threshold_scenarios(probs: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> pd.DataFrame:
    """Per threshold: the share deferred (top probability below it) and the accuracy on the rest."""
    top = confidence(probs)
    correct = probs.argmax(axis=1) == labels
    rows = []
    for threshold in thresholds:
        decided = top >= threshold
        accuracy = _ratio(correct[decided].sum(), decided.sum())
        rows.append({"threshold": float(threshold), "deferred": float(np.mean(~decided)),
                     "decided": int(decided.sum()), "accuracy of decided": float(accuracy)})
    return pd.DataFrame(rows, columns=["threshold", "deferred", "decided", "accuracy of decided"])


# ------------------------------------------------------------ confidence


def confidence_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = CONFIDENCE_BINS) -> pd.DataFrame:
    """Equal-width bins of top probability [lower, upper) (the last includes 1): count, accuracy, mean confidence."""
    top = confidence(probs)
    correct = probs.argmax(axis=1) == labels
    # k / n_bins rather than linspace: linspace gives 0.6000000000000001, which would put 0.6 in the bin below.
    edges = np.arange(n_bins + 1) / n_bins
    which = np.digitize(top, edges[1:-1])  # 0 .. n_bins - 1; a top probability of 1 lands in the last bin
    count = np.bincount(which, minlength=n_bins)
    return pd.DataFrame({
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "accuracy": _ratio(np.bincount(which, weights=correct, minlength=n_bins), count),
        "mean confidence": _ratio(np.bincount(which, weights=top, minlength=n_bins), count),
    })


def expected_calibration_error(bins: pd.DataFrame) -> float:
    """Sum over bins of (share of samples) x |accuracy - mean confidence|; empty bins weigh nothing."""
    filled = bins[bins["count"] > 0]
    if filled.empty:
        return np.nan
    weights = filled["count"] / filled["count"].sum()
    return float((weights * (filled["accuracy"] - filled["mean confidence"]).abs()).sum())


def _sample_table(rows: np.ndarray, probs: np.ndarray, labels: np.ndarray, sample_ids: Sequence[str],
                  class_names: Sequence[str]) -> pd.DataFrame:
    names = np.asarray(class_names, dtype=object)
    return pd.DataFrame({
        "index": rows,  # position in the validation set, how thumbnails and probes find the sample
        "sample": [sample_ids[i] for i in rows],
        "true": names[labels[rows]],
        "predicted": names[probs[rows].argmax(axis=1)],
        "confidence": confidence(probs[rows]),
    })


def low_confidence_correct(probs: np.ndarray, labels: np.ndarray, sample_ids: Sequence[str],
                           class_names: Sequence[str], k: int) -> pd.DataFrame:
    """The ``k`` correct predictions the model was least sure of, least sure first."""
    top = confidence(probs)
    correct = np.flatnonzero(probs.argmax(axis=1) == labels)
    rows = correct[np.argsort(top[correct], kind="stable")[:k]]
    return _sample_table(rows, probs, labels, sample_ids, class_names)


def high_confidence_wrong(probs: np.ndarray, labels: np.ndarray, sample_ids: Sequence[str],
                          class_names: Sequence[str], k: int) -> pd.DataFrame:
    """The ``k`` wrong predictions the model was surest of, surest first."""
    top = confidence(probs)
    wrong = np.flatnonzero(probs.argmax(axis=1) != labels)
    rows = wrong[np.argsort(-top[wrong], kind="stable")[:k]]
    return _sample_table(rows, probs, labels, sample_ids, class_names)
