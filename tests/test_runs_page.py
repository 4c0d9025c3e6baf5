"""The Runs page in AppTest: times in the browser's zone, and what an empty or missing runs folder says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tiller.store import Store

PAGE = Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "runs.py"
TIMEOUT_S = 30
NEW_YEAR_2026_UTC = 1767225600.0  # 2026-01-01 00:00:00 UTC


def runs_page(timezone: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT_S)
    if timezone:
        at.context["timezone"] = timezone  # what a browser in that zone sends
    return at.run()


def texts(elements) -> str:
    """The elements' Markdown as plain text (the page escapes user text)."""
    return re.sub(r"\\(.)", r"\1", "\n".join(str(e.value) for e in elements))


@pytest.mark.parametrize("timezone, shown", [("Asia/Shanghai", "2026-01-01 08:00:00"),
                                             ("America/Los_Angeles", "2025-12-31 16:00:00")])
def test_times_are_the_browsers_local_time_and_say_which_zone(runs_store, timezone, shown):
    runs_store.create_run(model="mlp", dataset="digits", run_id="new_year")
    runs_store.update_run("new_year", status="finished", updated=NEW_YEAR_2026_UTC)
    at = runs_page(timezone)
    assert not at.exception
    assert list(at.dataframe[0].value["last update"]) == [shown]
    assert f"times in {timezone}, your browser's time zone" in texts(at.caption)


def test_without_a_browser_zone_the_times_say_they_are_the_servers(runs_store):
    runs_store.create_run(model="mlp", dataset="digits", run_id="no_zone")
    at = runs_page()
    assert "times in the server's time zone" in texts(at.caption)


def test_an_empty_folder_says_how_to_start_a_run_that_writes_to_it(runs_store, tmp_path):
    at = runs_page()
    assert not at.exception
    info = texts(at.info)
    assert "No runs yet in this folder" in info and "tiller demo" in info and "--port 8502" in info
    assert f"--runs-dir {tmp_path}" in info


def test_a_missing_folder_is_named_not_created_and_fills_in_when_a_run_starts(tmp_path, monkeypatch):
    folder = tmp_path / "not_yet"
    monkeypatch.setenv("TILLER_RUNS_DIR", str(folder))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = runs_page()
    assert not at.exception
    info = texts(at.info)
    assert f"There is no folder `{folder}` yet" in info
    assert f"tiller train --runs-dir {folder}" in info and "tiller dashboard --runs-dir" in info
    assert not folder.exists()  # a mistyped folder is not left behind

    store = Store(folder)  # the first run creates the folder
    store.create_run(model="mlp", dataset="digits", run_id="first")
    store.close()
    st.cache_data.clear()  # as the 2 s refresh interval passing
    at.run()
    assert not at.exception and list(at.dataframe[0].value["open"]) == ["run?run=first"]


def test_the_run_page_header_gives_its_times_in_the_browsers_zone_and_says_so(runs_store):
    runs_store.create_run(model="mlp", dataset="digits", run_id="new_year")
    runs_store.update_run("new_year", status="finished", updated=NEW_YEAR_2026_UTC)
    at = AppTest.from_file(str(PAGE.parent / "run.py"), default_timeout=TIMEOUT_S)
    at.context["timezone"] = "Asia/Shanghai"
    at.query_params["run"] = "new_year"
    header = texts(at.run().caption)
    assert "last update 2026-01-01 08:00:00 · times in Asia/Shanghai, your browser's time zone" in header
