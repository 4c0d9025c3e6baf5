"""Tiller's Streamlit dashboard: runs, one run live, comparisons."""
