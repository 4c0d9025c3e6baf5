"""Compare page: runs side by side: one metric overlaid, config differences, final metrics."""

import pandas as pd
import streamlit as st

from dashboard import charts, data
from dashboard.display import run_labels, wait_for_first_run
from dashboard.tables import config_diff_table, final_metrics_table

# The metrics offered, most useful first; only those the chosen runs logged are listed.
METRIC_ORDER = [("val", "accuracy"), ("val", "loss"), ("train", "accuracy"), ("train", "loss"),
                ("", "lr"), ("", "epoch_seconds"), ("", "samples_per_sec")]
SCORE_COLUMNS = ["train loss", "val loss", "train accuracy", "val accuracy", "best val accuracy"]


def metric_choices(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    logged = set(zip(metrics["split"], metrics["name"]))
    return [m for m in METRIC_ORDER if m in logged] + sorted(logged - set(METRIC_ORDER))


@st.fragment(run_every=data.REFRESH_S)
def live_comparison(chosen: list[str], labels: dict[str, str]) -> None:
    metrics = data.metrics(chosen)
    choices = metric_choices(metrics)
    if not choices:
        st.info("The chosen runs have not finished an epoch yet.")
    else:
        split, name = st.selectbox("Metric", choices, format_func=lambda m: charts.metric_title(*m),
                                   key="compare_metric")
        st.plotly_chart(charts.compare_figure(metrics, split, name, {i: labels[i] for i in chosen}),
                        key="compare-chart", width="stretch")

    st.subheader("Config differences", anchor=False)
    configs = {labels[i]: data.current_config(i) or {} for i in chosen}
    differences = config_diff_table(configs)
    if len(chosen) < 2:
        st.caption("Pick two or more runs to see how their configs differ.")
    elif differences.empty:
        st.caption("The chosen runs have the same config.")
    else:
        st.caption("Only the keys whose values differ; each run's config in force.")
        st.dataframe(differences, hide_index=True, width="stretch")

    st.subheader("Final metrics", anchor=False)
    chosen_runs = data.runs().set_index("id").loc[chosen].reset_index()
    finals = final_metrics_table(chosen_runs, metrics, labels)
    st.dataframe(finals, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in SCORE_COLUMNS})
    st.download_button("Download CSV", finals.to_csv(index=False), file_name="tiller-compare.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")


st.title("Compare runs")
runs = data.runs()
if runs.empty:
    wait_for_first_run()
    st.stop()

labels = run_labels(runs)
chosen = st.multiselect("Runs", runs["id"].tolist(), default=runs["id"].iloc[:2].tolist(),
                        format_func=lambda i: labels[i], key="compare_runs")
if not chosen:
    st.info("Pick one or more runs to compare.")
    st.stop()
live_comparison(chosen, labels)
