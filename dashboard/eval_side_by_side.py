"""The Compare page's side-by-side evaluation of two runs: each at its best epoch,
its row-normalised confusion matrix and per-class scores next to the other's."""

from __future__ import annotations

import streamlit as st

from tiller.dashboard import data
from tiller.dashboard.display import md_escape
from tiller.dashboard.eval_views import best_epoch, confusion_view, per_class_view, report_view


def _headline(folder: str, run_id: str, epoch: int) -> str:
    _, summary, _ = report_view(folder, run_id, epoch)
    return " · ".join(f"{name} {value:.3f}" for name, value in summary.items() if value == value)  # skip NaN


def _one_side(folder: str, run_id: str, label: str, column_key: str) -> None:
    epochs = data.prediction_epochs(run_id)
    if not epochs:
        st.info(f"{md_escape(label)} has no stored validation predictions yet: they appear after its first epoch.")
        return
    best = best_epoch(run_id, epochs)
    epoch = st.selectbox("Epoch", epochs, index=epochs.index(best), key=f"side_epoch_{column_key}_{run_id}",
                         format_func=lambda e: f"{e} (best validation accuracy)" if e == best else str(e))
    st.caption(_headline(folder, run_id, epoch))
    _, normalised = confusion_view(folder, run_id, epoch)
    st.plotly_chart(normalised, key=f"side_confusion_{column_key}", width="stretch")
    *_, (scores_figure, _, _, _) = per_class_view(folder, run_id, epoch)
    st.plotly_chart(scores_figure, key=f"side_scores_{column_key}", width="stretch")


def side_by_side(chosen: list[str], labels: dict[str, str]) -> None:
    """Two of the chosen runs (two or more) evaluated next to each other."""
    st.subheader("Evaluation side by side", anchor=False)
    if not any(data.prediction_epochs(run_id) for run_id in chosen):
        # One note rather than the same one under each of two pickers.
        st.info("The chosen runs have no stored validation predictions yet: they appear after a run's first "
                "validation (a loop of your own stores them with `run.log_predictions`).")
        return
    folder = data.runs_dir()
    left, right = st.columns(2, gap="large")
    for column, default, key in ((left, 0, "left"), (right, 1, "right")):
        with column:
            run_id = st.selectbox("Run", chosen, index=default, key=f"side_run_{key}", format_func=lambda i: labels[i])
            _one_side(folder, run_id, labels[run_id], key)
