"""Run page: one run, live (curves, config, history, events), and the controls to steer it:
the form, the advisor (suggestions, autopilot, reports) and reverting a config version.

The run comes from ``?run=<id>`` (an id, a unique prefix, or ``latest``), else
the newest live run, else the newest run.

What the page is made of depends on the run: a live run with a config gets the
Steer form beside the config in force; an ended run gets its config alone (there
is nothing left to steer); a run that has not recorded its config yet gets a word
on what it is doing. The form stays outside the refreshing fragments (they would
take what is being typed), so the overview reruns the whole page when the run
moves from one of these shapes to another.
"""

from typing import NamedTuple

import pandas as pd
import streamlit as st

from tiller.dashboard import charts, data
from tiller.dashboard.advisor_panel import advisor_section, reports_section, revert_controls
from tiller.dashboard.display import (
    ended_explanation, epochs_done, is_live, local_time, md_escape, progress_line, status_label, user_timezone,
    wait_for_first_run, zone_note,
)
from tiller.dashboard.run_picker import pick_run
from tiller.dashboard.steering_widgets import control_buttons, show_pending, steering_form
from tiller.dashboard.tables import config_table, events_markdown, in_force_table, versions_table
from tiller.trainer.steering.live_config import pending_edit

STATUS_COLORS = {"running": "green", "paused": "orange", "finished": "blue", "failed": "red",
                 "stopped": "gray", "crashed": "red"}
EVENTS_SHOWN = 200
# Beside the Steer form (one section open) the config table is about as tall as the form;
# it scrolls through the ~60 keys, so the history and events below stay within reach.
CONFIG_TABLE_PX = 860
ENDED_CONFIG_TABLE_PX = 420  # alone across the page: shorter, the rest of the page matters more
GRID_ROW_PX, GRID_HEADER_PX = 35, 38  # Streamlit's data grid: a short config takes only its rows' height
EVENTS_TABLE_PX = 480  # events scroll past this; fewer events take only the room they need
EVENTS_UNSCROLLED = 10
# The config history fits 1280 px without scrolling sideways; a change or reason longer than a
# column wraps, which Streamlit's grid does only in rows taller than 4rem: three lines.
HISTORY_COLUMNS = {
    "version": st.column_config.NumberColumn(width="small"),
    "from epoch": st.column_config.NumberColumn(width="small"),
    "source": st.column_config.TextColumn(width="small"),
    "changes": st.column_config.TextColumn(width="medium"),
    "reason": st.column_config.TextColumn(width="medium"),
    "request": st.column_config.TextColumn(width="medium"),  # adv_20261124_042147_b361#1
    "recorded": st.column_config.TextColumn(width="medium"),
}
HISTORY_WRAP_PX = 66
HISTORY_TEXT_FITS = 30  # characters that fit one line of a medium (200 px) column


class PageShape(NamedTuple):
    has_config: bool
    live: bool


def page_shape(run: dict, versions: pd.DataFrame) -> PageShape:
    return PageShape(has_config=not versions.empty, live=is_live(run["status"]))


# ----------------------------------------------------------------- sections


def show_header(run: dict, config: dict | None, pending: dict | None, metrics: pd.DataFrame) -> None:
    tz = user_timezone()
    st.header(md_escape(run["name"]), anchor=False)
    st.badge(status_label(run["status"]), color=STATUS_COLORS.get(run["status"], "gray"))
    st.caption(
        f"{md_escape(run['id'])} · {md_escape(run['model'])} on {md_escape(run['dataset'])} · "
        f"started {local_time(run['created'], tz)} · last update {local_time(run['updated'], tz)} · {zone_note(tz)}"
    )
    total = run["num_epochs"]
    if not pd.isna(total) and total:
        st.progress(min(1.0, epochs_done(run) / total), text=progress_line(run, metrics))
    if run["status"] == "failed" and isinstance(run.get("error"), str):
        st.error(f"This run failed: {md_escape(run['error'].strip().splitlines()[-1])}")
        with st.expander("Traceback"):
            st.code(run["error"], language=None)
    if is_live(run["status"]):
        if config is not None:
            control_buttons(run["id"], run["status"], config, pending)
    elif run["status"] != "finished":  # finished needs no explaining; stopped, failed, crashed say how to go on
        st.info(ended_explanation(run["status"], run["id"]))


def show_curves(run: dict, metrics: pd.DataFrame, versions: pd.DataFrame) -> None:
    if metrics.empty:
        if not versions.empty:  # without a config either, show_no_config says what is going on
            st.info(no_curves_yet(run))
        return
    run_id = run["id"]
    # One epoch range for the three charts, so their epochs line up (a change recorded for
    # the epoch in progress puts the lr chart one epoch ahead otherwise).
    epochs = charts.run_epoch_range(metrics, versions)
    loss, accuracy = st.columns(2)
    loss.plotly_chart(charts.train_val_figure(metrics, "loss", x_range=epochs), key=f"loss-{run_id}",
                      width="stretch")
    accuracy.plotly_chart(charts.train_val_figure(metrics, "accuracy", x_range=epochs), key=f"accuracy-{run_id}",
                          width="stretch")
    st.plotly_chart(charts.lr_figure(metrics, versions, x_range=epochs), key=f"lr-{run_id}", width="stretch")
    note = charts.run_curves_note(metrics)  # a loop that logs steps, not epochs, can log thousands
    if note:
        st.caption(note)


def no_curves_yet(run: dict) -> str:
    """What the curves' place says before the first epoch is logged."""
    status = run["status"]
    if status == "running":
        return ("Epoch 1 is under way: the loss, accuracy and learning-rate curves appear here as soon as it "
                "finishes.")
    if status == "paused":
        return "Paused before the first epoch finished: press Resume to go on; the curves appear after epoch 1."
    return f"This run {'was ' + status if status == 'stopped' else status} before it finished an epoch, so it has " \
           "no curves."


def show_recent_error(run: dict, events: pd.DataFrame) -> None:
    """The latest error, while it is news: logged at the last epoch or the one in progress.
    An older one (a refused edit the run went on from) is left to the events table."""
    errors = events[events["level"] == "error"]
    if errors.empty:
        return
    latest = errors.iloc[0]
    if not pd.isna(latest["epoch"]) and int(latest["epoch"]) < epochs_done(run):
        return
    at_epoch = "" if pd.isna(latest["epoch"]) else f"epoch {int(latest['epoch'])}, "
    st.error(f"Latest error ({at_epoch}{local_time(latest['time'], user_timezone())}): {md_escape(latest['message'])}")


def show_no_config(run: dict, logged: bool) -> None:
    if logged:  # a loop logging through the store alone need not record a config
        st.info("This run has recorded no config, so there is none to show or steer: its training loop logs "
                "metrics only.")
    elif is_live(run["status"]):
        st.info("The trainer is starting (reading the data, building the model). The curves, the config in "
                "force and the Steer form appear here once it records the run's config.")
    else:
        st.info("This run ended before it recorded a config, so there is nothing to show or steer; its events "
                "below may say why.")


# ------------------------------------------------------------ live fragments


@st.fragment(run_every=data.REFRESH_S)
def live_overview(run_id: str, shape: PageShape) -> None:
    run = data.run_record(run_id)
    if run is None:
        st.error(f"Run {md_escape(run_id)} is no longer in the database.")
        return
    versions = data.config_versions(run_id)
    if page_shape(run, versions) != shape:
        st.rerun(scope="app")  # the run started steering, ended or was resumed: the page changes shape
    config = None if versions.empty else dict(versions.iloc[-1]["config"])
    pending = pending_edit(data.live_config_path(run_id), config) if config else None
    metrics = data.metrics([run_id])
    show_header(run, config, pending, metrics)
    if run["status"] != "failed":  # a failed run's header already shows its error
        show_recent_error(run, data.events(run_id, EVENTS_SHOWN))
    show_curves(run, metrics, versions)


@st.fragment(run_every=data.REFRESH_S)
def live_config(run_id: str) -> None:
    run, config = data.run_record(run_id), data.current_config(run_id)
    if run is None or config is None:
        return
    live = is_live(run["status"])
    st.subheader("Config in force" if live else "Config at the end", anchor=False)
    table = config_table(config, run.get("hot_keys"))
    if live:
        show_pending(run, config, pending_edit(data.live_config_path(run_id), config))
    else:
        table = table.drop(columns="changes")  # nothing changes in a run that has ended
    tallest = CONFIG_TABLE_PX if live else ENDED_CONFIG_TABLE_PX
    height = min(tallest, GRID_HEADER_PX + GRID_ROW_PX * len(table))
    st.dataframe(table, hide_index=True, width="stretch", height=height)
    st.caption(f"Live config file: {md_escape(data.live_config_path(run_id))}")
    state = data.in_force(run_id)
    if state:
        with st.expander(f"What the trainer reports in force after epoch {state['epoch']}"):
            st.caption("Read off the live objects in the training process (optimizer, layers, batches), "
                       "so you can check that a change did what it says.")
            st.table(in_force_table(state).set_index("setting"))  # a static table wraps long text


@st.fragment(run_every=data.REFRESH_S)
def live_history(run_id: str) -> None:
    tz = user_timezone()
    versions = data.config_versions(run_id)
    if not versions.empty:
        st.subheader("Config history", anchor=False)
        table = versions_table(versions, tz)
        long_text = any(len(text) > HISTORY_TEXT_FITS
                        for text in [*table["changes"], *table["reason"], *table["request"]])
        st.dataframe(table, hide_index=True, width="stretch", row_height=HISTORY_WRAP_PX if long_text else None,
                     column_config=HISTORY_COLUMNS)
        run = data.run_record(run_id)
        if run is not None:
            revert_controls(run_id, run, versions)


# A fragment of its own, quick to redraw: the events are not held faded (Streamlit fades what a
# rerun has not redrawn yet) while the history's revert controls redraw on a busy machine.
@st.fragment(run_every=data.REFRESH_S)
def live_events(run_id: str) -> None:
    tz = user_timezone()
    st.subheader("Events", anchor=False)
    events = data.events(run_id, EVENTS_SHOWN)
    if events.empty:
        st.caption("No events yet: the trainer notes here what it does and finds (config changes it applies or "
                   "refuses, pauses, warnings, errors).")
        return
    # Markdown, not a data grid: long messages wrap and read in full. Many events scroll.
    with st.container(height=EVENTS_TABLE_PX if len(events) > EVENTS_UNSCROLLED else "content", border=False):
        st.markdown(events_markdown(events, tz))


# --------------------------------------------------------------------- page

runs = data.runs()
if runs.empty:
    st.title("Run")
    wait_for_first_run()
    st.stop()

run_id = pick_run(runs, key="run_picker")
run = data.run_record(run_id)
if run is None:  # deleted since the picker listed it
    st.error(f"Run {md_escape(run_id)} is no longer in the database.")
    st.stop()
versions = data.config_versions(run_id)
shape = page_shape(run, versions)
live_overview(run_id, shape)

if not shape.has_config:
    show_no_config(run, logged=not data.metrics([run_id]).empty)
elif shape.live:
    form_column, config_column = st.columns(2, gap="large")
    with form_column:
        st.subheader("Steer", anchor=False)
        latest = versions.iloc[-1]
        steering_form(run_id, latest["config"], int(latest["version"]), run_hot_keys=run.get("hot_keys"))
    with config_column:
        live_config(run_id)
else:
    live_config(run_id)

if shape.has_config:
    # The question box sits outside the refreshing fragments, so live updates leave typing alone.
    advisor_section(run_id)
    reports_section(run_id)
live_history(run_id)
live_events(run_id)
