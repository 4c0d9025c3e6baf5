"""Tiller's dashboard: ``streamlit run dashboard/app.py`` (or ``tiller dashboard``).

The runs folder comes from ``$TILLER_RUNS_DIR`` (``tiller dashboard`` sets it).
"""

import sys
from pathlib import Path

# ``streamlit run`` puts dashboard/ on sys.path, not the repository root; the
# pages import ``dashboard``, ``store`` and ``trainer`` as packages, which then
# works whether or not Tiller is installed.
REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import streamlit as st  # noqa: E402  (after the path fix on purpose)

PAGES_DIR = Path(__file__).resolve().parent / "app_pages"

st.set_page_config(page_title="Tiller", layout="wide")
st.navigation(
    [
        st.Page(PAGES_DIR / "runs.py", title="Runs", icon=":material/table_rows:", default=True),
        st.Page(PAGES_DIR / "run.py", title="Run", icon=":material/monitoring:"),
        st.Page(PAGES_DIR / "evaluation.py", title="Evaluation", icon=":material/analytics:"),
        st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/compare_arrows:"),
    ],
    position="top",  # four pages fit in the header; the wide layout keeps the whole width for charts
).run()
