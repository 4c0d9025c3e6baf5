"""Run page: one run, live (curves, config, history, events), and the controls to steer it:
the form, the advisor (suggestions, autopilot, reports) and reverting a config version.

The run comes from ``?run=<id>`` (an id, a unique prefix, or ``latest``), else
the newest live run, else the newest run.
"""

import pandas as pd
import streamlit as st

from dashboard import charts, data
from dashboard.advisor_panel import advisor_section, reports_section, revert_controls
from dashboard.display import (
    is_live, local_time, md_escape, progress_text, status_label, user_timezone, wait_for_first_run,
)
from dashboard.run_picker import pick_run
from dashboard.steering_widgets import control_buttons, show_pending, steering_form
from dashboard.tables import config_table, events_table, in_force_table, versions_table
from trainer.live_config import pending_edit

STATUS_COLORS = {"running": "green", "paused": "orange", "finished": "blue", "failed": "red",
                 "stopped": "gray", "crashed": "red"}
EVENTS_SHOWN = 200


# ----------------------------------------------------------------- sections


def show_header(run: dict, config: dict | None, pending: dict | None) -> None:
    tz = user_timezone()
    st.header(md_escape(run["name"]), anchor=False)
    st.badge(status_label(run["status"]), color=STATUS_COLORS.get(run["status"], "gray"))
    st.caption(
        f"{md_escape(run['id'])} · {md_escape(run['model'])} on {md_escape(run['dataset'])} · "
        f"started {local_time(run['created'], tz)} · last update {local_time(run['updated'], tz)}"
    )
    total = run["num_epochs"]
    if not pd.isna(total) and total:
        st.progress(min(1.0, run["epoch"] / total if not pd.isna(run["epoch"]) else 0.0),
                    text=f"Epoch {progress_text(run)}")
    if config is not None:
        control_buttons(run["id"], run["status"], config, pending)
    if run["status"] == "failed" and isinstance(run.get("error"), str):
        st.error(f"This run failed: {md_escape(run['error'].strip().splitlines()[-1])}")
        with st.expander("Traceback"):
            st.code(run["error"], language=None)


def show_curves(run_id: str) -> None:
    metrics = data.metrics([run_id])
    if metrics.empty:
        st.info("Waiting for the first epoch to finish; the curves appear after it.")
        return
    loss, accuracy = st.columns(2)
    loss.plotly_chart(charts.train_val_figure(metrics, "loss"), key=f"loss-{run_id}", width="stretch")
    accuracy.plotly_chart(charts.train_val_figure(metrics, "accuracy"), key=f"accuracy-{run_id}",
                          width="stretch")
    st.plotly_chart(charts.lr_figure(metrics, data.config_versions(run_id)), key=f"lr-{run_id}",
                    width="stretch")
    note = charts.run_curves_note(metrics)  # a loop that logs steps, not epochs, can log thousands
    if note:
        st.caption(note)


def show_latest_error(events: pd.DataFrame) -> None:
    errors = events[events["level"] == "error"]
    if not errors.empty:
        latest = errors.iloc[0]
        st.error(f"Latest error ({local_time(latest['time'], user_timezone())}): {md_escape(latest['message'])}")


# ------------------------------------------------------------ live fragments


@st.fragment(run_every=data.REFRESH_S)
def live_overview(run_id: str) -> None:
    run = data.run_record(run_id)
    if run is None:
        st.error(f"Run {md_escape(run_id)} is no longer in the database.")
        return
    config = data.current_config(run_id)
    pending = pending_edit(data.live_config_path(run_id), config) if config else None
    show_header(run, config, pending)
    if run["status"] != "failed":  # a failed run's header already shows its error
        show_latest_error(data.events(run_id, EVENTS_SHOWN))
    show_curves(run_id)


@st.fragment(run_every=data.REFRESH_S)
def live_config(run_id: str) -> None:
    run, config = data.run_record(run_id), data.current_config(run_id)
    if run is None or config is None:
        return
    st.subheader("Config in force", anchor=False)
    show_pending(run, config, pending_edit(data.live_config_path(run_id), config))
    table = config_table(config, run.get("hot_keys"))
    if not is_live(run["status"]):
        table = table.drop(columns="changes")  # nothing changes in a run that has ended
    # About 60 keys: a scrolling table keeps the history and events below within reach.
    st.dataframe(table, hide_index=True, width="stretch", height=460)
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
    st.subheader("Config history", anchor=False)
    versions = data.config_versions(run_id)
    st.dataframe(versions_table(versions, tz), hide_index=True, width="stretch",
                 column_config={"changes": st.column_config.TextColumn(width="large")})
    run = data.run_record(run_id)
    if run is not None and not versions.empty:
        revert_controls(run_id, run, versions)
    st.subheader("Events", anchor=False)
    events = data.events(run_id, EVENTS_SHOWN)
    if events.empty:
        st.caption("No events yet.")
    else:
        st.dataframe(events_table(events, tz), hide_index=True, width="stretch",
                     column_config={"message": st.column_config.TextColumn(width="large")})


# --------------------------------------------------------------------- page

runs = data.runs()
if runs.empty:
    st.title("Run")
    wait_for_first_run()
    st.stop()

run_id = pick_run(runs, key="run_picker")
live_overview(run_id)

form_column, config_column = st.columns(2, gap="large")
with form_column:
    st.subheader("Steer", anchor=False)
    versions = data.config_versions(run_id)
    if versions.empty:
        st.info("This run has not recorded its config yet; steering opens once it has.")
    else:
        run = data.run_record(run_id)
        steering_form(run_id, run["status"], versions.iloc[-1]["config"], int(versions.iloc[-1]["version"]),
                      run_hot_keys=run.get("hot_keys"))
with config_column:
    live_config(run_id)

# The question box sits outside the refreshing fragments, so live updates leave typing alone.
advisor_section(run_id)
reports_section(run_id)
live_history(run_id)
