"""Compare page: runs side by side: one metric overlaid (smoothed, reduced, with config changes),
hyperparameters against the best validation metric, config differences, final metrics."""

from typing import Any

import pandas as pd
import streamlit as st

from tiller.dashboard import charts, data, hyperparameter_charts
from tiller.dashboard.display import md_escape, run_labels, wait_for_first_run
from tiller.dashboard.downsample import METHOD_NOTES
from tiller.dashboard.eval_side_by_side import side_by_side
from tiller.dashboard.smoothing import Smoothing
from tiller.dashboard.tables import config_diff_table, final_metrics_table
from tiller.trainer.steering.safe_text import markdown_code

MAX_RUNS = 50  # more lines than this cannot be told apart on one chart
# The metrics offered, most useful first; only those the chosen runs logged are listed.
METRIC_ORDER = [("val", "accuracy"), ("val", "loss"), ("train", "accuracy"), ("train", "loss"),
                ("", "lr"), ("", "epoch_seconds"), ("", "samples_per_sec")]
SCORE_COLUMNS = ["train loss", "val loss", "train accuracy", "val accuracy", "best val accuracy"]
SMOOTHING_METHODS = {"none": "None", "ema": "EMA", "window": "Moving window"}
DOWNSAMPLING_METHODS = {"minmax": "min/max per bucket", "lttb": "LTTB"}


def metric_choices(metrics: pd.DataFrame) -> list[tuple[str, str]]:
    # Deduplicate in pandas first: zipping every row of a long run's metrics takes a noticeable while.
    pairs = metrics[["split", "name"]].drop_duplicates()
    logged = set(zip(pairs["split"], pairs["name"]))
    return [m for m in METRIC_ORDER if m in logged] + sorted(logged - set(METRIC_ORDER))


def smoothing_controls() -> Smoothing:
    method_column, setting_column = st.columns(2)
    method = method_column.radio("Smoothing", list(SMOOTHING_METHODS), format_func=SMOOTHING_METHODS.get,
                                 horizontal=True, key="compare_smoothing")
    if method == "ema":
        weight = setting_column.slider(
            "EMA weight", 0.0, 0.99, Smoothing.weight, 0.01, key="compare_ema_weight",
            help="How much each point keeps of the curve before it: 0 is the raw curve, 0.9 averages over "
                 "about the last ten points. The start is bias-corrected, so the curve does not rise from zero.")
        return Smoothing("ema", weight=weight)
    if method == "window":
        window_column, centred_column = setting_column.columns([3, 2], vertical_alignment="bottom")
        window = window_column.slider("Window (points)", 2, 200, Smoothing.window, key="compare_window")
        centred = centred_column.checkbox(
            "Centred", value=True, key="compare_centred",
            help="A centred window does not lag behind the raw curve; a trailing one averages only past points.")
        return Smoothing("window", window=window, centred=centred)
    return Smoothing()


def metric_chart(chosen: list[str], labels: dict[str, str], metrics: pd.DataFrame,
                 choices: list[tuple[str, str]]) -> None:
    if not choices:
        st.info("The chosen runs have not logged a metric yet; their curves appear after the first epoch "
                "(or step). Pick runs that have trained for a while to compare them now.")
        return
    metric_column, method_column = st.columns([2, 1])
    split, name = metric_column.selectbox("Metric", choices, format_func=lambda m: charts.metric_title(*m),
                                          key="compare_metric")
    method = method_column.selectbox(
        "Downsampling", list(DOWNSAMPLING_METHODS), format_func=DOWNSAMPLING_METHODS.get,
        key="compare_downsampling",
        help=f"Curves longer than {charts.DEFAULT_MAX_POINTS:,} points are reduced so the page stays fast: "
             f"{METHOD_NOTES['minmax']}; {METHOD_NOTES['lttb']}. Points are never picked at random.")
    smoothing = smoothing_controls()
    versions = {run_id: data.config_versions(run_id) for run_id in chosen}  # cached: one query per run per refresh
    chart = charts.compare_figure(metrics, split, name, {i: labels[i] for i in chosen}, smoothing=smoothing,
                                  versions=versions, method=method)
    st.plotly_chart(chart.figure, key="compare-chart", width="stretch")
    notes = [chart.note] if chart.note else []
    if smoothing.active:
        notes.append("The faint lines are the raw values.")
    if any((v["version"] > 1).any() for v in versions.values() if not v.empty):
        notes.append("Diamonds mark mid-run config changes; hover one to see what changed, who asked and why.")
    if notes:
        st.caption(" ".join(notes))


def page_theme() -> str:
    """"light" or "dark": the browser's, once it has said (the first draw of a session may not
    know yet; the live part redraws within seconds), else the dashboard's configured theme."""
    return st.context.theme.type or st.get_option("theme.base") or "light"


def hyperparameter_views(chosen: list[str], labels: dict[str, str], metrics: pd.DataFrame,
                         choices: list[tuple[str, str]], configs: dict[str, dict[str, Any]]) -> None:
    """Settings against the best validation metric (two or more runs)."""
    st.subheader("Hyperparameters", anchor=False)
    targets = [m for m in choices if m[0] == "val"]
    if not targets:
        st.info("None of the chosen runs has validated yet; these views appear after their first validation "
                "(a loop of your own logs it as `val/<name>`).")
        return
    target = st.selectbox("Against the best", targets, format_func=lambda m: charts.metric_title(*m),
                          key="compare_target")
    metric = md_escape(charts.metric_title(*target).lower())  # a metric's name comes from the training loop
    best = hyperparameter_charts.best_values(metrics, *target).dropna()
    scored = [run_id for run_id in chosen if run_id in best.index and configs[run_id]]
    if len(scored) < 2:
        st.info(f"Fewer than two of the chosen runs have a {metric} and a recorded config; pick runs that have "
                "validated at least once.")
        return
    table = hyperparameter_charts.hyperparameter_table({run_id: configs[run_id] for run_id in scored})
    if table.columns.empty:
        st.info(no_setting_to_plot(config_diff_table({labels[i]: configs[i] for i in scored})))
        return
    if len(scored) < len(chosen):
        st.caption(f"{len(chosen) - len(scored)} of the chosen runs are left out: no {metric} or no recorded "
                   "config yet.")
    st.plotly_chart(hyperparameter_charts.parallel_figure(table, best, target, theme=page_theme()),
                    key="compare-parcoords", width="stretch")
    better = "lower" if hyperparameter_charts.lower_is_better(target[1]) else "higher"
    st.caption(f"One line per run, ending at its best {metric} on the last axis; the stronger its blue, the "
               f"better the run ({better} is better), the greyer, the worse. Drag along an axis to keep only "
               "the runs within a range. Settings that span 100× or more (learning rates) are on a log scale.")
    x_column, colour_column = st.columns(2)
    key = x_column.selectbox("Setting", list(table.columns), key="compare_scatter_key")
    colour_options = [None] + [k for k in table.columns if k != key]
    colour_key = colour_column.selectbox("Colour by", colour_options, key="compare_scatter_colour",
                                         format_func=lambda k: "run (as on the curves)" if k is None else k)
    st.plotly_chart(hyperparameter_charts.hyperparameter_scatter(table, best, target, key, labels, colour_key),
                    key="compare-scatter", width="stretch")


def no_setting_to_plot(differences: pd.DataFrame) -> str:
    """Why no setting can be plotted against the metric, and what to do instead."""
    if differences.empty:
        return ("The chosen runs share every numeric, true/false and choice setting, so there is nothing to "
                "plot against the metric: their differences come from chance alone. Pick runs whose settings "
                "differ, or train one with a setting changed (`tiller train --set learning_rate=0.01`).")
    keys = ", ".join(markdown_code(k) for k in differences["key"])
    return (f"The chosen runs differ only in {keys}, which no axis can show (lists, free text, bookkeeping, or "
            "keys only some runs have): see Config differences below.")


def config_differences(chosen: list[str], labels: dict[str, str], configs: dict[str, dict[str, Any]]) -> None:
    """The keys whose values differ between the chosen runs (two or more)."""
    st.subheader("Config differences", anchor=False)
    differences = config_diff_table({labels[i]: configs[i] for i in chosen})
    if differences.empty:
        st.caption("The chosen runs have the same config.")
    else:
        st.caption("Only the keys whose values differ; each run's config in force.")
        st.dataframe(differences, hide_index=True, width="stretch")


def final_metrics(chosen: list[str], labels: dict[str, str], metrics: pd.DataFrame) -> None:
    st.subheader("Final metrics", anchor=False)
    chosen_runs = data.runs().set_index("id").loc[chosen].reset_index()
    finals = final_metrics_table(chosen_runs, metrics, labels)
    st.dataframe(finals, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f") for c in SCORE_COLUMNS})
    st.download_button("Download CSV", finals.to_csv(index=False), file_name="tiller-compare.csv",
                       mime="text/csv", icon=":material/download:", on_click="ignore")


def one_run_note(runs_in_folder: int) -> None:
    """What a comparison of one run lacks, and how to get a second run to compare."""
    if runs_in_folder > 1:
        st.caption("Pick two or more runs to see their settings against their best validation metric, how "
                   "their configs differ and their evaluations side by side.")
    else:
        st.info("This is the only run so far. Train another with a setting changed (e.g. `tiller train --set "
                "learning_rate=0.01`) to compare their settings, configs and evaluations here.")


@st.fragment(run_every=data.REFRESH_S)
def live_comparison(chosen: list[str], labels: dict[str, str]) -> None:
    metrics = data.metrics(chosen)  # ended runs from a cache that never expires, live ones read afresh
    configs = {run_id: data.current_config(run_id) or {} for run_id in chosen}
    choices = metric_choices(metrics)
    metric_chart(chosen, labels, metrics, choices)
    if len(chosen) < 2:
        one_run_note(len(labels))
    elif choices:  # with no metric at all, the curves' note already says when these views fill in
        hyperparameter_views(chosen, labels, metrics, choices, configs)
    if len(chosen) >= 2:
        config_differences(chosen, labels, configs)
    final_metrics(chosen, labels, metrics)


st.title("Compare runs")
runs = data.runs()
if runs.empty:
    wait_for_first_run()
    st.stop()

labels = run_labels(runs)
chosen = st.multiselect("Runs", runs["id"].tolist(), default=runs["id"].iloc[:2].tolist(),
                        format_func=lambda i: labels[i], key="compare_runs", max_selections=MAX_RUNS,
                        help=f"Up to {MAX_RUNS} runs: more lines than that cannot be told apart on one chart.")
if not chosen:
    st.info("Pick one or more runs above to compare their curves, settings and final metrics.")
    st.stop()
if len(chosen) == MAX_RUNS:
    st.caption(f"{MAX_RUNS} runs is the most one comparison shows; remove a run to add another.")
live_comparison(chosen, labels)
if len(chosen) >= 2:
    side_by_side(chosen, labels)
