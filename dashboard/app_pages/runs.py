"""Runs page: every run in the folder, newest first, refreshed live."""

import streamlit as st

from dashboard import data
from dashboard.display import is_live, md_escape, user_timezone
from dashboard.tables import runs_table

EMPTY_STATE = """
**No runs yet in this folder.** Start one from a terminal:

- `tiller demo` trains two small models on built-in data and opens this dashboard, or
- `tiller train --config CONFIG.json` (or `--set key=value ...`) trains your own config.

New runs appear here within a couple of seconds.
"""

COLUMNS = {
    "open": st.column_config.LinkColumn("run", help="Open the run's page", display_text=r"run\?run=(.*)"),
    "status": st.column_config.TextColumn("status", width="small"),
    "best val accuracy": st.column_config.NumberColumn("best val accuracy", format="%.4f"),
    "last update": st.column_config.TextColumn("last update", help="In your local time"),
    "started": st.column_config.TextColumn("started", help="In your local time"),
}

st.title("Runs")
st.caption(f"Runs folder: {md_escape(data.runs_dir())}")


@st.fragment(run_every=data.REFRESH_S)
def live_runs() -> None:
    runs = data.runs()
    if runs.empty:
        st.info(EMPTY_STATE)
        return
    live = sum(is_live(s) for s in runs["status"])
    st.caption(f"{len(runs)} runs, {live} live · refreshes every {data.REFRESH_S:g} s")
    st.dataframe(runs_table(runs, user_timezone()), column_config=COLUMNS, hide_index=True, width="stretch")


live_runs()
