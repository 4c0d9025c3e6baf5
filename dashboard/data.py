"""What the pages read, through the Store API only, cached briefly.

Every cached query is keyed by the runs folder, so two folders (or two tests)
never see each other's rows. The TTL matches the live refresh: a page that
redraws every 2 s asks the database at most once per interval, however many
browser sessions are open. What a run that has ended logged never changes (the
trainer writes every row before it sets the final status), so its metrics and
config history are read once and kept, and a page comparing finished runs
re-reads only the runs list.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import streamlit as st

from tiller.store import LIVE_STATUSES, STATUSES, RunNotFound, Store, corruption_in, resolve_runs_dir
from tiller.store.paths import DB_FILENAME, run_dir_for
from tiller.trainer.steering import live_config
from tiller.trainer.steering.live_config import STATE_FILENAME

REFRESH_S = 2.0  # how often live parts of the pages redraw
CACHE_TTL_S = REFRESH_S
# Finished, failed, stopped: final, nothing is logged after them. ("crashed" is a live status
# whose heartbeat stopped; the process may only be suspended, so it is not final.)
ENDED_STATUSES = tuple(status for status in STATUSES if status not in LIVE_STATUSES)
ENDED_RUNS_KEPT = 64  # runs whose metrics stay cached: a full comparison (50 runs) and a few more


def runs_dir() -> str:
    """The runs folder: ``$TILLER_RUNS_DIR`` (set by ``tiller dashboard``), else ``./runs``."""
    return str(resolve_runs_dir())


@st.cache_resource(show_spinner=False)
def _open_store(folder: str) -> Store:
    # One connection per folder for the whole server; Store locks it per query.
    return Store(folder)


def _store(folder: str) -> Store:
    """The folder's store; opened again when tiller.db was restored or replaced, or its -wal or
    -shm deleted, since it was opened (the old connection would show the old file's rows forever)."""
    opened = _open_store(folder)
    if opened.still_in_place() or not has_database(folder):  # gone: wait for the first run to create it
        return opened
    _open_store.clear()
    forget_live_data()
    return _open_store(folder)


def _said_on_page_when_broken(read):
    """``read``, but a tiller.db that is not a database or is corrupt shows as one ``st.error``
    (the file, what is wrong, what to do) and ends the page or fragment there, not as a traceback."""

    @functools.wraps(read)
    def guarded(*args, **kwargs):
        try:
            return read(*args, **kwargs)
        except Exception as exc:
            corrupt = corruption_in(exc, Path(runs_dir()) / DB_FILENAME)
            if corrupt is None:
                raise
        st.error(str(corrupt))
        st.stop()

    return guarded


@_said_on_page_when_broken
def store() -> Store:
    """The runs folder's store, for fresh reads and for the few writes the dashboard makes
    (advice it asks for); the trainer writes everything else."""
    return _store(runs_dir())


def run_dir(run_id: str) -> Path:
    """The run's folder; refuses an id that would leave the runs folder."""
    return run_dir_for(Path(runs_dir()), run_id)


def live_config_path(run_id: str) -> Path:
    return live_config.live_config_path(Path(runs_dir()), run_id)


def in_force(run_id: str) -> dict[str, Any] | None:
    """What the trainer read off its live objects after its last epoch (``state.json``)."""
    try:
        return json.loads((run_dir(run_id) / STATE_FILENAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


_LIVE_QUERIES = []  # the cached queries that expire after CACHE_TTL_S


def _live_query(query):
    """Cache ``query`` for one refresh interval (``CACHE_TTL_S``), and list it for ``forget_live_data``."""
    cached = st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)(query)
    _LIVE_QUERIES.append(cached)
    return cached


@_live_query
def _runs(folder: str) -> pd.DataFrame:
    return _store(folder).runs()


@_live_query
def _ended_runs(folder: str) -> dict[str, float]:
    """Ended runs and when each last changed: the never-expiring caches below are keyed by
    both, so a run that is resumed and ends again is read again."""
    ended = _runs(folder).loc[lambda runs: runs["status"].isin(ENDED_STATUSES)]
    return dict(zip(ended["id"], ended["updated"]))


@_live_query
def _metrics(folder: str, run_ids: tuple[str, ...]) -> pd.DataFrame:
    return _store(folder).metrics(run_ids)


@st.cache_data(show_spinner=False, max_entries=ENDED_RUNS_KEPT)
def _ended_run_metrics(folder: str, run_id: str, updated: float) -> pd.DataFrame:
    # No TTL: only called for a run that has ended, whose metrics are final.
    return _store(folder).metrics([run_id])


@_live_query
def _config_versions(folder: str, run_id: str) -> pd.DataFrame:
    return _store(folder).config_versions(run_id)


@st.cache_data(show_spinner=False, max_entries=1024)
def _ended_config_versions(folder: str, run_id: str, updated: float) -> pd.DataFrame:
    # No TTL: an ended run's config never changes again (a revert needs a live run).
    return _store(folder).config_versions(run_id)


@_live_query
def _events(folder: str, run_id: str, limit: int | None) -> pd.DataFrame:
    return _store(folder).events(run_id, limit)


@_live_query
def _prediction_epochs(folder: str, run_id: str) -> list[int]:
    return _store(folder).prediction_epochs(run_id)


@_live_query
def _advice(folder: str, run_id: str) -> pd.DataFrame:
    return _store(folder).advice(run_id)


@_live_query
def _reports(folder: str, run_id: str) -> pd.DataFrame:
    return _store(folder).reports(run_id)


@_live_query
def _revert_preview(folder: str, run_id: str, version: int) -> tuple[dict[str, Any], str]:
    from tiller.trainer.advisor.service import revert_updates  # here: only the run page needs the advisor
    from tiller.trainer.advisor.types import AdvisorError

    try:
        return revert_updates(_store(folder), run_id, version), ""
    except AdvisorError as exc:
        return {}, str(exc)


@st.cache_data(show_spinner=False, max_entries=64)
def _predictions(folder: str, run_id: str, epoch: int):
    # No TTL: an epoch's predictions never change once written.
    return _store(folder).predictions(run_id, epoch)


def has_database(folder: str | None = None) -> bool:
    """Whether the runs folder (``folder``, else this dashboard's) holds Tiller's database yet."""
    return (Path(folder or runs_dir()) / DB_FILENAME).is_file()


@_said_on_page_when_broken
def runs() -> pd.DataFrame:
    """All runs, newest first (see ``Store.runs``); none while the folder has no database.

    The dashboard leaves creating the folder and its database to the first run: opening
    the store would create both, so a mistyped ``--runs-dir`` would leave a stray folder
    and look like a real, empty one.
    """
    folder = runs_dir()
    if not has_database(folder):
        return pd.DataFrame(columns=["id", "name", "status"])
    return _runs(folder)


@_live_query
def _run_record(folder: str, run_id: str) -> dict[str, Any] | None:
    try:
        return _store(folder).run(run_id)
    except RunNotFound:
        return None


@_said_on_page_when_broken
def run_record(run_id: str) -> dict[str, Any] | None:
    """One run as ``runs()`` lists it, or ``None``; read alone, not out of every run in the folder."""
    return _run_record(runs_dir(), run_id)


@_said_on_page_when_broken
def fresh_run_record(run_id: str) -> dict[str, Any]:
    """The run as it is right now, bypassing the cache: for checks before writing."""
    return store().run(run_id)


@_said_on_page_when_broken
def metrics(run_ids: Iterable[str]) -> pd.DataFrame:
    """The runs' metrics in long form, ordered by run id as ``Store.metrics`` returns them.

    Read per run, so that ended runs come from the cache that never expires and only
    live runs are read again after each refresh interval.
    """
    folder, ids = runs_dir(), sorted(set(run_ids))
    if not ids:
        return _metrics(folder, ())
    ended = _ended_runs(folder)
    frames = [_ended_run_metrics(folder, i, ended[i]) if i in ended else _metrics(folder, (i,)) for i in ids]
    # A run with nothing logged reads as a frame whose columns may be untyped (object):
    # concatenated, it would turn the value column into objects.
    frames = [frame for frame in frames if not frame.empty] or frames[:1]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


@_said_on_page_when_broken
def config_versions(run_id: str) -> pd.DataFrame:
    folder = runs_dir()
    ended = _ended_runs(folder)
    if run_id in ended:
        return _ended_config_versions(folder, run_id, ended[run_id])
    return _config_versions(folder, run_id)


@_said_on_page_when_broken
def current_config(run_id: str) -> dict[str, Any] | None:
    """The config in force (the latest version), or ``None`` before the first one is recorded."""
    versions = config_versions(run_id)
    return None if versions.empty else dict(versions.iloc[-1]["config"])


@_said_on_page_when_broken
def events(run_id: str, limit: int | None = None) -> pd.DataFrame:
    return _events(runs_dir(), run_id, limit)


@_said_on_page_when_broken
def prediction_epochs(run_id: str) -> list[int]:
    """Epochs of ``run_id`` with stored validation predictions, ascending."""
    return _prediction_epochs(runs_dir(), run_id)


@_said_on_page_when_broken
def predictions(run_id: str, epoch: int):
    """``store.Predictions`` of one epoch (probabilities, labels, ids, class names), or None."""
    return _predictions(runs_dir(), run_id, int(epoch))


@_said_on_page_when_broken
def advice(run_id: str) -> pd.DataFrame:
    """The run's advice, newest first (see ``Store.advice``)."""
    return _advice(runs_dir(), run_id)


def forget_live_data() -> None:
    """Drop every cached query that expires, as if its TTL had passed, and keep the data that
    never changes (an epoch's predictions): what a live refresh after ``CACHE_TTL_S`` reads afresh."""
    for query in _LIVE_QUERIES:
        query.clear()


def forget_advice() -> None:
    """Drop cached advice, so advice just asked for shows at once."""
    _advice.clear()


@_said_on_page_when_broken
def reports(run_id: str) -> pd.DataFrame:
    """The run's adjustment reports, newest first (id, version, epoch, time, markdown, path)."""
    return _reports(runs_dir(), run_id)


@_said_on_page_when_broken
def revert_preview(run_id: str, version: int) -> tuple[dict[str, Any], str]:
    """What reverting ``version`` would send (``revert_updates``), or ``({}, why not)``."""
    return _revert_preview(runs_dir(), run_id, int(version))
