"""Tiller's dashboard: ``tiller dashboard`` serves it (``streamlit run`` of this file works too).

The runs folder comes from ``$TILLER_RUNS_DIR`` (``tiller dashboard`` sets it). The pages
import the installed ``tiller`` package, so no path needs fixing.
"""

from pathlib import Path

import streamlit as st

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"

# Streamlit leaves 8rem above every page's first element when the navigation is at the top: at
# 1280x800 a sixth of the screen stays empty above each title. 5rem still clears the 3.75rem
# header. CSS, not the theme.paddingTop option: setting any theme option makes a custom theme,
# which stops a browser set to dark (or a user's own theme.base) from getting the dark one.
TOP_GAP_CSS = '<style>[data-testid="stMainBlockContainer"] { padding-top: 5rem; }</style>'

# The tab's icon, served by the dashboard itself: without one Streamlit shows each page's
# :material/...: icon, which the browser fetches from a public font CDN (the dashboard works offline).
ICON = Path(__file__).resolve().parent / "tiller-icon.png"

st.set_page_config(page_title="Tiller", page_icon=str(ICON), layout="wide")
st.html(TOP_GAP_CSS)  # style only: Streamlit adds it to the page without taking room in it
st.navigation(
    [
        st.Page(PAGES_DIR / "runs.py", title="Runs", icon=":material/table_rows:", default=True),
        st.Page(PAGES_DIR / "run.py", title="Run", icon=":material/monitoring:"),
        st.Page(PAGES_DIR / "evaluation.py", title="Evaluation", icon=":material/analytics:"),
        st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    ],
    position="top",  # four pages fit in the header; the wide layout keeps the whole width for charts
).run()
