import pytest
import streamlit as st

from tiller.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "runs")
    yield s
    s.close()


@pytest.fixture
def runs_store(tmp_path, monkeypatch) -> Store:
    """A store in ``tmp_path`` that the dashboard pages read (``TILLER_RUNS_DIR``), with fresh caches."""
    monkeypatch.setenv("TILLER_RUNS_DIR", str(tmp_path))
    # Caches are keyed by runs folder already; clearing also drops connections to old tmp folders.
    st.cache_data.clear()
    st.cache_resource.clear()
    return Store(tmp_path)
