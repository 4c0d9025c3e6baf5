"""Runs page: every run in the folder, newest first, refreshed live."""

from pathlib import Path

import streamlit as st

from tiller.dashboard import data
from tiller.dashboard.display import empty_state, start_commands, is_live, md_escape, user_timezone, zone_note
from tiller.dashboard.tables import runs_table

COLUMNS = {
    "open": st.column_config.LinkColumn("run", help="Open the run's page", display_text=r"run\?run=(.*)"),
    "status": st.column_config.TextColumn("status", width="small"),
    "name": st.column_config.TextColumn("name", width="medium"),
    "last update": st.column_config.TextColumn("last update", help="In your browser's time zone", width="medium"),
}

if "open_run" in st.session_state:
    st.switch_page("app_pages/run.py", query_params={"run": st.session_state.pop("open_run")})

st.title("Runs")
st.caption(f"Runs folder: {md_escape(data.runs_dir())}")


def no_runs_text(folder: str) -> str:
    """What to do while the folder lists no runs: start one, writing to this folder."""
    if not Path(folder).is_dir():
        return (f"**There is no folder `{folder}` yet.** The first run that writes to it creates it:\n\n"
                f"{start_commands(folder)}\n"
                "The run appears here within a couple of seconds. Meant another folder? Start the dashboard "
                "again with `tiller dashboard --runs-dir FOLDER`.")
    return empty_state(folder)


def remember_selected_run() -> None:
    """Note the run of the row the user selected, and rerun the page to open it.

    The row number refers to the table as the browser showed it, which may be
    older than the runs read now (a new run shifts every row), so it is looked
    up in the ids that table was drawn from. The page switch itself happens
    outside the fragment: Streamlit cannot switch pages from inside one.
    """
    rows = st.session_state.get("runs_table", {}).get("selection", {}).get("rows", [])
    shown = st.session_state.get("runs_shown", [])
    if rows and rows[0] < len(shown):
        st.session_state["open_run"] = shown[rows[0]]
        st.rerun(scope="app")


@st.fragment(run_every=data.REFRESH_S)
def live_runs() -> None:
    remember_selected_run()
    runs = data.runs()
    if runs.empty:
        st.info(no_runs_text(data.runs_dir()))
        return
    live = sum(is_live(s) for s in runs["status"])
    tz_name = user_timezone()
    st.caption(f"{len(runs)} runs, {live} live · refreshes every {data.REFRESH_S:g} s · {zone_note(tz_name)} · "
               "select a row to open the run here, or click its id to open it in a new tab")
    st.session_state["runs_shown"] = runs["id"].tolist()
    st.dataframe(runs_table(runs, tz_name), column_config=COLUMNS, hide_index=True, width="stretch",
                 key="runs_table", on_select="rerun", selection_mode="single-row")


live_runs()
