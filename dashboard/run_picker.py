"""The run picker the Run and Evaluation pages share, kept in step with ``?run=``.

``?run=`` takes an id, a unique prefix, or ``latest``; without it the newest
live run is shown, else the newest run.
"""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from tiller.dashboard import data
from tiller.dashboard.display import is_live, md_escape, run_labels
from tiller.store import RunNotFound


def default_run(runs: pd.DataFrame) -> str:
    live = runs[runs["status"].map(is_live)]
    return (live if not live.empty else runs)["id"].iloc[0]


def _remember_pick(key: str) -> None:
    # Keeps the URL in step with the picker, so a reload or a shared link shows the same run.
    st.query_params["run"] = st.session_state[key]


def pick_run(runs: pd.DataFrame, key: str) -> str:
    """A "Run" selectbox under session key ``key``, starting from ``?run=`` when given."""
    ids = runs["id"].tolist()
    ref = st.query_params.get("run")
    if ref:
        try:
            st.session_state[key] = data.store().find_run(ref)
        except RunNotFound as exc:
            st.warning(f"{md_escape(exc)}. Showing another run instead.")
    if st.session_state.get(key) not in ids:
        st.session_state[key] = default_run(runs)
    labels = run_labels(runs)
    # No status in the labels: the picker is not live, and a stale "running" next
    # to a live "paused" badge would contradict it.
    run_id = st.selectbox("Run", ids, key=key, on_change=functools.partial(_remember_pick, key),
                          format_func=lambda i: labels[i] if labels[i] == i else f"{labels[i]} · {i}")
    st.query_params["run"] = run_id
    return run_id
