"""Evaluation page: seed 002's evaluation views of one run at one epoch, from its validation predictions.

The run comes from ``?run=<id>`` as on the Run page; the epoch defaults to the one
with the best validation accuracy. Numbers come from ``eval_metrics`` and figures
from ``eval_charts``, each cached by runs folder, run, epoch and the user's inputs:
an epoch's predictions never change, so switching tabs, or back to an epoch seen
before, costs no computation. A panel whose data is missing says why.
"""

import numpy as np
import pandas as pd
import streamlit as st

from tiller.dashboard import data, eval_charts, eval_metrics, probe_panels
from tiller.dashboard.eval_views import (
    best_epoch, binary_view, confidence_view, confusion_view, curves_view, detection, hard_samples,
    kappa_and_deferral, per_class_view, report_view, scenarios, severity_error,
)
from tiller.dashboard.display import epochs_done, is_live, md_escape, wait_for_first_run
from tiller.dashboard.labels import short_label, text_columns
from tiller.dashboard.run_picker import pick_run
from tiller.store.store import OWN_LOOP

DEFAULT_HARD_SAMPLES = 10
TABS = ["Report & summary", "Confusion matrices", "ROC & PR", "Per class", "Clinical utility",
        "Confidence & calibration", "Hard samples", "Feature space", "Grad-CAM"]
THUMBNAILS_PER_ROW = 6
# Two confusion matrices of more classes than this side by side leave each cell too small for its number.
SIDE_BY_SIDE_CLASSES = 8
# A class-name column is as wide as its longest name, within these bounds (px): a table cell shows
# no tooltip, so a name cut short stays cut; only a name longer than the widest is.
CLASS_COLUMN_PX = (80, 360)
COLUMN_PX, CELL_PADDING_PX = 8, 24  # about one column of table text (text_columns), and a cell's padding
WHOLE_TABLE_ROWS = 40  # a table of one row per class shows whole up to this many rows, then scrolls
SEVERITY_HEADER_COLUMNS = 12  # a severity column's header: the class name cut to this (text_columns)


# ------------------------------------------------------------------ picking


@st.fragment(run_every=data.REFRESH_S)
def newer_epochs_notice(run_id: str, shown: list[int]) -> None:
    """While the run trains, offer the epochs validated since the page was drawn.

    Only this line polls: redrawing every panel every two seconds would move the
    figures under the user's cursor.
    """
    new = [epoch for epoch in data.prediction_epochs(run_id) if epoch not in shown]
    if new and st.button(f"{len(new)} more epoch(s) validated since this page was drawn, the latest "
                         f"{new[-1]}: show them", icon=":material/refresh:", key=f"eval_newer_{run_id}"):
        st.rerun(scope="app")


STOPPED_EARLY = {  # how a run ended before any validation predictions, by status
    "failed": "This run failed",
    "stopped": "This run was stopped",
    "crashed": "The trainer of this run is gone (its process ended, or it stopped answering)",
}
LOG_PREDICTIONS = "`run.log_predictions(probs, labels, class_names=[...])`"


def no_predictions_text(run: dict) -> str:
    """Why a run has nothing to evaluate yet, and what comes next."""
    run_id, status = run["id"], run["status"]
    if status in STOPPED_EARLY:
        go_on = (f"It ran in a training loop of your own, which `tiller resume` cannot continue: run your script "
                 "again." if run.get("trainer") == OWN_LOOP else
                 f"`tiller resume {run_id}` continues it from its last checkpoint, if it saved one; `tiller train` "
                 "starts a new run.")
        return (f"{STOPPED_EARLY[status]} before it stored any validation predictions, so there is nothing to "
                f"evaluate. Its [Run page](run?run={run_id}) shows what happened. " + go_on)
    if is_live(status) and epochs_done(run) == 0:
        return ("This run has not finished its first epoch yet. The panels appear when that epoch's validation "
                "ends; this page shows them by itself.")
    waits = " This page shows them by itself as soon as they are stored." if is_live(status) else ""
    return ("This run has stored no validation predictions. Tiller's trainer stores them after each epoch's "
            f"validation; a training loop of your own stores them with {LOG_PREDICTIONS}; runs from before "
            f"Tiller stored predictions have none.{waits}")


@st.fragment(run_every=data.REFRESH_S)
def wait_for_predictions(run_id: str) -> None:
    """Redraw the page once the live run stores its first predictions: nothing on it moves until then."""
    if data.prediction_epochs(run_id):
        st.rerun(scope="app")


def pick_epoch(run_id: str, epochs: list[int]) -> int:
    best = best_epoch(run_id, epochs)
    return st.selectbox("Epoch", epochs, index=epochs.index(best), key=f"eval_epoch_{run_id}",
                        format_func=lambda e: f"{e} (best validation accuracy)" if e == best else str(e))


# ------------------------------------------------------------ display helpers


def number_text(value: float) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.3f}"


def class_column_px(names) -> int:
    """A width that shows the longest of ``names`` whole, if it is not very long."""
    widest = max((text_columns(str(name)) for name in names), default=0)
    low, high = CLASS_COLUMN_PX
    return int(min(max(widest * COLUMN_PX + CELL_PADDING_PX, low), high))


def per_class_height(rows: int) -> str:
    """Whole, so the report's accuracy and averages under the classes are not scrolled out of
    sight (Streamlit shows ten rows); a very long table scrolls."""
    return "content" if rows <= WHOLE_TABLE_ROWS else "auto"


def show_table(table: pd.DataFrame, class_columns: tuple[str, ...] = (), **kwargs) -> None:
    """``table`` with its fractional numbers to 3 decimals and a dash where one is not defined (0/0).

    ``class_columns`` hold class names ("_index" for the index): each is made as wide as its names.
    """
    # As text: Streamlit prints "None" for NaN, even through a Styler's na_rep, which reads as missing data.
    fractions = table.select_dtypes("float").columns
    shown = table.astype({column: object for column in fractions})
    for column in fractions:
        shown[column] = [number_text(value) for value in table[column]]
    config = {column: st.column_config.TextColumn(alignment="right") for column in fractions}
    for column in class_columns:
        names = table.index if column == "_index" else table[column]
        config[column] = st.column_config.TextColumn(width=class_column_px(names))
    st.dataframe(shown, column_config=config, **kwargs)


def chart(figure, key: str) -> None:
    st.plotly_chart(figure, key=key, width="stretch")


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"0.3, 0.5 0.7"`` -> ``(0.3, 0.5, 0.7)``; ValueError names an entry that is not in [0, 1]."""
    thresholds = []
    for entry in text.replace(",", " ").split():
        try:
            value = float(entry)
        except ValueError:
            raise ValueError(f"{entry!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{entry} is not between 0 and 1")
        thresholds.append(value)
    return tuple(sorted(set(thresholds)))


def show_thumbnails(run_id: str, samples: pd.DataFrame) -> None:
    """The images (or texts) of ``samples`` (validation ``index`` and ``sample`` id per row).

    They come from reloading the run's model and data (``tiller.trainer.engine.probe``), which takes
    seconds the first time, so only when asked for.
    """
    if not st.toggle("Show the samples", key=f"eval_show_{run_id}_{samples['index'].iloc[0]}",
                     help="Loads the run's data set once (seconds), then shows each image or text."):
        return
    run_dir, indices = data.run_dir(run_id), samples["index"].tolist()
    texts = probe_panels.snippets(run_dir, indices)
    if any(text is not None for text in texts):
        for sample, text in zip(samples["sample"], texts):
            st.markdown(f"**{md_escape(sample)}**: {md_escape(text or '')}")
        return
    images = probe_panels.thumbnails(run_dir, indices)
    columns = st.columns(THUMBNAILS_PER_ROW)
    for position, (sample, image) in enumerate(zip(samples["sample"], images)):
        if image is not None:
            columns[position % THUMBNAILS_PER_ROW].image(image, caption=str(sample), width="stretch")


# ------------------------------------------------------------------ panels


def show_report(folder: str, run_id: str, epoch: int) -> None:
    report, headline, note = report_view(folder, run_id, epoch)
    for column, (name, value) in zip(st.columns(len(headline)), headline.items()):
        column.metric(name, number_text(value))
    if note:
        st.info(md_escape(note))
    st.subheader("Classification report", anchor=False)
    show_table(report, class_columns=("_index",), width="stretch", height=per_class_height(len(report)))


def show_confusion(folder: str, run_id: str, epoch: int, classes: int) -> None:
    raw, normalised = confusion_view(folder, run_id, epoch)
    left, right = st.columns(2) if classes <= SIDE_BY_SIDE_CLASSES else (st.container(), st.container())
    with left:
        chart(raw, "eval-confusion-raw")
    with right:
        chart(normalised, "eval-confusion-normalised")


def show_multiclass_curves(folder: str, run_id: str, epoch: int, note: str | None) -> None:
    figures = curves_view(folder, run_id, epoch)
    if note:
        st.info(md_escape(note))
    if figures is None:
        st.info("No ROC or precision-recall curve: none of the classes has validation samples both in and "
                "outside it.")
        return
    left, right = st.columns(2)
    with left:
        chart(figures[0], "eval-roc")
    with right:
        chart(figures[1], "eval-pr")


def show_binary_curves(folder: str, run_id: str, epoch: int, class_names: list[str]) -> None:
    positive = md_escape(class_names[1])
    threshold = st.slider(f"Threshold: call a sample {positive} when p({positive}) is at least",
                          0.0, 1.0, 0.5, 0.01, key=f"eval_binary_threshold_{run_id}")
    outcome, heatmap, curves = binary_view(folder, run_id, epoch, threshold)
    for column, name in zip(st.columns(4), ("precision", "recall", "specificity", "accuracy")):
        column.metric(name, number_text(getattr(outcome, name)))
    if curves is None:
        st.info(f"No ROC or precision-recall curve: the validation set needs samples of both "
                f"{md_escape(class_names[0])} and {positive}.")
        chart(heatmap, "eval-binary-confusion")
        return
    roc_column, pr_column, matrix_column = st.columns(3)
    with roc_column:
        chart(curves[0], "eval-binary-roc")
    with pr_column:
        chart(curves[1], "eval-binary-pr")
    with matrix_column:
        chart(heatmap, "eval-binary-confusion")


def show_per_class(folder: str, run_id: str, epoch: int) -> None:
    scores, counts, rates, (scores_figure, counts_figure, rates_figure, radar) = per_class_view(folder, run_id, epoch)
    left, right = st.columns(2)
    with left:
        chart(scores_figure, "eval-per-class-scores")
    with right:
        if "training" not in counts.columns:
            st.info("This run did not record its training samples per class; only validation counts are shown.")
        chart(counts_figure, "eval-class-counts")
    st.subheader("One class against the rest", anchor=False)
    left, right = st.columns(2)
    with left:
        chart(rates_figure, "eval-rates")
    with right:
        chart(radar, "eval-radar")
    st.caption("Sensitivity = recall, specificity = true-negative rate, PPV = precision, NPV = negative "
               "predictive value; – where the rate is 0/0 (no samples to take it over).")
    show_table(rates.set_index("class"), class_columns=("_index",), width="stretch",
               height=per_class_height(len(rates)))


def severity_editor(run_id: str, class_names: list[str]) -> np.ndarray:
    default = pd.DataFrame(eval_metrics.default_severity(len(class_names)), index=class_names, columns=class_names)
    st.caption("Severity of predicting the column's class for a sample of the row's class (default: how many "
               "classes apart they are). The diagonal is a correct prediction and always counts 0.")
    # Headers cut long names short (the full name is the header's tooltip): one long name would
    # otherwise take the editor's whole width.
    columns = {name: st.column_config.NumberColumn(short_label(name, SEVERITY_HEADER_COLUMNS), help=name, min_value=0.0)
               for name in class_names}
    columns["_index"] = st.column_config.TextColumn(width=class_column_px(class_names))
    edited = st.data_editor(default, key=f"eval_severity_{run_id}_{len(class_names)}", width="stretch",
                            column_config=columns)
    return edited.to_numpy(dtype=float, na_value=np.nan)


def show_severity(folder: str, run_id: str, epoch: int, class_names: list[str]) -> None:
    st.subheader("Severity-weighted error rate", anchor=False)
    severity = severity_editor(run_id, class_names)
    try:
        error = severity_error(folder, run_id, epoch, severity)
    except ValueError as exc:
        st.warning(f"Severity matrix not used: {md_escape(exc)}.")
        return
    st.metric("severity-weighted error rate", number_text(error),
              help="Sum of (samples x severity) over all cells / (samples x the largest severity): 0 means no "
                   "errors, 1 means every sample wrong in the worst way.")
    if np.isnan(error):
        st.info("Not defined: every severity off the diagonal is 0.")


def show_detection(folder: str, run_id: str, epoch: int, class_names: list[str], binary: bool) -> None:
    st.subheader("Detection of one class", anchor=False)
    picker, _ = st.columns(2)  # as wide as a class name needs, not the page
    class_index = picker.selectbox("Class", range(len(class_names)), index=1 if binary else 0,
                                   format_func=lambda c: class_names[c], key=f"eval_detection_class_{run_id}")
    found = detection(folder, run_id, epoch, class_index)
    if found.samples == 0:
        st.info(f"No validation samples of {md_escape(class_names[class_index])}, so nothing to detect.")
        return
    rate, confidence, _ = st.columns(3)
    rate.metric("detection rate (recall)", number_text(found.rate),
                help=f"Share of the {found.samples} validation samples of this class predicted as it.")
    confidence.metric("mean confidence", number_text(found.mean_confidence),
                      help="Mean probability the model gave this class on its own validation samples.")


def show_scenarios(folder: str, run_id: str, epoch: int, deferral: pd.DataFrame) -> None:
    st.subheader("Decision-threshold scenarios", anchor=False)
    text = st.text_input("Thresholds on the top probability (0–1, separated by commas)",
                         value=", ".join(f"{t:g}" for t in eval_metrics.DEFAULT_THRESHOLDS),
                         key=f"eval_thresholds_{run_id}",
                         help="A sample whose top probability is below the threshold is deferred to a person.")
    try:
        thresholds = parse_thresholds(text)
    except ValueError as exc:
        st.warning(f"Thresholds not used: {md_escape(exc)}.")
        thresholds = ()
    if thresholds:
        show_table(scenarios(folder, run_id, epoch, thresholds), hide_index=True, width="stretch")
    chart(eval_charts.threshold_figure(deferral, thresholds), "eval-deferral")


def show_clinical(folder: str, run_id: str, epoch: int, class_names: list[str], binary: bool) -> None:
    kappa, deferral = kappa_and_deferral(folder, run_id, epoch)
    st.metric("Cohen's kappa, quadratic weights", number_text(kappa),
              help="Agreement of prediction and truth beyond chance; a miss by two classes costs four times a "
                   "miss by one.")
    if np.isnan(kappa):
        st.info("Kappa is not defined here: truth and prediction hold only one and the same class.")
    # One above the other: the severity matrix needs a column per class, more than half the page holds.
    show_severity(folder, run_id, epoch, class_names)
    show_detection(folder, run_id, epoch, class_names, binary)
    show_scenarios(folder, run_id, epoch, deferral)


def show_confidence(folder: str, run_id: str, epoch: int) -> None:
    bins, ece, (accuracy_figure, count_figure, reliability) = confidence_view(folder, run_id, epoch)
    st.metric("expected calibration error", number_text(ece),
              help="Over 10 equal-width bins of top probability: the share of samples in each bin times "
                   "|accuracy − mean confidence| in it, summed.")
    left, right = st.columns(2)
    with left:
        chart(accuracy_figure, "eval-bin-accuracy")
        chart(count_figure, "eval-bin-count")
    with right:
        chart(reliability, "eval-reliability")


def show_hard_samples(folder: str, run_id: str, epoch: int) -> None:
    k = st.columns(4)[0].number_input("Samples per table", 1, 100, DEFAULT_HARD_SAMPLES, key=f"eval_hard_k_{run_id}")
    unsure_right, sure_wrong = hard_samples(folder, run_id, epoch, int(k))
    for title, table, empty in (
        ("Correct, least confident", unsure_right, "No correct predictions at this epoch."),
        ("Wrong, most confident", sure_wrong, "No wrong predictions at this epoch."),
    ):
        st.subheader(title, anchor=False)
        if table.empty:
            st.info(empty)
            continue
        show_table(table, class_columns=("true", "predicted"), hide_index=True, width="stretch")
        show_thumbnails(run_id, table)


# --------------------------------------------------------------------- page

st.title("Evaluation", anchor=False)
runs = data.runs()
if runs.empty:
    wait_for_first_run()
    st.stop()

run_id = pick_run(runs, key="eval_run_picker")
run = data.run_record(run_id)
epochs = data.prediction_epochs(run_id)
if not epochs:
    st.info(no_predictions_text(run))
    if is_live(run["status"]):
        wait_for_predictions(run_id)
    st.stop()
if is_live(run["status"]):
    newer_epochs_notice(run_id, epochs)
epoch = pick_epoch(run_id, epochs)
predictions = data.predictions(run_id, epoch)
if predictions is None:
    st.info(f"The predictions of epoch {epoch} are no longer in the database.")
    st.stop()

folder, names = data.runs_dir(), predictions.class_names
binary = predictions.task == "binary"
st.caption(f"{len(predictions.labels):,} validation samples · {len(names)} classes · "
           f"{'binary, positive class ' + md_escape(names[1]) if binary else 'multiclass'}")

report, confusion, curves, per_class, clinical, calibration, hard, feature_space, gradcam = st.tabs(TABS)
with report:
    show_report(folder, run_id, epoch)
with confusion:
    show_confusion(folder, run_id, epoch, len(names))
with curves:
    if binary:
        show_binary_curves(folder, run_id, epoch, names)
    else:
        show_multiclass_curves(folder, run_id, epoch, report_view(folder, run_id, epoch)[2])
with per_class:
    show_per_class(folder, run_id, epoch)
with clinical:
    show_clinical(folder, run_id, epoch, names, binary)
with calibration:
    show_confidence(folder, run_id, epoch)
with hard:
    show_hard_samples(folder, run_id, epoch)
with feature_space:
    probe_panels.feature_space_panel(data.run_dir(run_id), predictions)
with gradcam:
    if st.toggle("Explain predictions with Grad-CAM", key=f"eval_gradcam_{run_id}",
                 help="Loads the run's best or last checkpoint and its data (seconds), then explains the "
                      "samples you pick."):
        probe_panels.gradcam_panel(data.run_dir(run_id), predictions)
    else:
        st.caption("Grad-CAM shows where a convolutional model looked for evidence of a class, on samples "
                   "you pick (image models only).")
