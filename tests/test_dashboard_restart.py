"""Issue 7: the dashboard restarted or the browser closed mid-run leaves the run unaffected, nothing lost.

Real processes throughout: a trainer on scikit-learn's digits, ``tiller dashboard`` (which runs
Streamlit in a child process) and a headless Chromium driven by Playwright.
"""

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tiller.trainer.steering.live_config import request_change

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT_S = 90  # Streamlit and Chromium start slowly on a loaded 2-core machine

# Installed in the dashboard processes through PYTHONPATH: every SQLite statement the dashboard
# prepares on the runs database passes SQLite's authorizer, which notes what it would do. SQLite
# asks the authorizer for every statement, whatever library runs it; column reads
# (SQLITE_READ) and function calls are left out, they are many and never write.
SQL_SPY = textwrap.dedent(
    """
    import os, sqlite3, threading

    _log, _db = os.environ.get("TILLER_TEST_SQL_LOG"), os.environ.get("TILLER_TEST_SQL_DB")
    if _log and _db:
        _connect, _lock = sqlite3.connect, threading.Lock()
        _quiet = (sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION)

        def _note(*fields):
            with _lock, open(_log, "a", encoding="utf-8") as f:
                f.write("\\t".join(str(x) for x in (os.getpid(),) + fields) + "\\n")

        def _authorize(action, arg1, arg2, db_name, trigger):
            try:
                if action not in _quiet:
                    _note(action, arg1, arg2)
            except Exception:
                pass
            return sqlite3.SQLITE_OK

        def connect(database, *args, **kwargs):
            conn = _connect(database, *args, **kwargs)
            try:
                if os.path.realpath(os.fspath(database)) == os.path.realpath(_db):
                    conn.set_authorizer(_authorize)
                    _note("connect", os.fspath(database), "")
            except (TypeError, ValueError):
                pass
            return conn

        sqlite3.connect = connect
    """
)
# What a read-only session may ask SQLite for: reads, transactions, and connection settings
# (journal_mode=WAL is a no-op on a database that is already WAL, which the test checks).
READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT, sqlite3.SQLITE_RECURSIVE}
CONNECTION_PRAGMAS = {"busy_timeout", "synchronous", "foreign_keys", "recursive_triggers"}
SCHEMA_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
                  "foreign_key_list", "database_list"}  # reads, though they take an argument


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as response:
            return response.read().strip() == b"ok"
    except OSError:
        return False


class Dashboards:
    """``tiller dashboard`` processes, each in its own process group so that a signal reaches
    Streamlit as well (as Ctrl-C or a service manager's stop does); all killed at teardown."""

    def __init__(self, tmp_path: Path, runs_dir: Path):
        self.runs_dir, self.started = runs_dir, []
        spy_dir = tmp_path / "sql_spy"
        spy_dir.mkdir()
        (spy_dir / "sitecustomize.py").write_text(SQL_SPY, encoding="utf-8")
        self.sql_log, self.log = tmp_path / "dashboard_sql.log", tmp_path / "dashboard.log"
        python_path = os.pathsep.join(filter(None, [str(spy_dir), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "PYTHONPATH": python_path,
                    "TILLER_TEST_SQL_LOG": str(self.sql_log), "TILLER_TEST_SQL_DB": str(runs_dir / "tiller.db"),
                    "OMP_NUM_THREADS": "1"}

    def start(self, port: int) -> subprocess.Popen:
        return self.wait_until_served(self.spawn(port), port)

    def spawn(self, port: int) -> subprocess.Popen:
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"--- tiller dashboard --port {port}\n")
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tiller", "dashboard", "--runs-dir", str(self.runs_dir), "--port", str(port),
                 "--no-browser"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append(proc)
        return proc

    def wait_until_served(self, proc: subprocess.Popen, port: int) -> subprocess.Popen:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(port):
            if proc.poll() is not None:
                pytest.fail(f"the dashboard exited ({proc.returncode}) before it served:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the dashboard did not answer its health check:\n{self.output()}")
            time.sleep(0.2)
        return proc

    def signal_group(self, proc: subprocess.Popen, signum: int, port: int) -> None:
        """Send ``signum`` to the dashboard and its Streamlit server; wait until both are gone."""
        os.killpg(proc.pid, signum)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the dashboard outlived signal {signum}:\n{self.output()}")
        deadline = time.monotonic() + 30
        while port_open(port):  # Streamlit, in the same group, lets go of the port
            if time.monotonic() > deadline:
                pytest.fail(f"port {port} still served after signal {signum}:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def sql(self) -> list[list[str]]:
        if not self.sql_log.exists():
            return []
        return [line.split("\t") for line in self.sql_log.read_text(encoding="utf-8").splitlines()]

    def kill_all(self) -> None:
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group: a Streamlit orphan is in it too
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


@pytest.fixture
def browser_path():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
def dashboards(tmp_path):
    started = Dashboards(tmp_path, tmp_path / "runs")
    yield started
    started.kill_all()


@pytest.fixture
def trainers():
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def launch(playwright, browser_path: str):
    return playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])


def show_runs_page(page, port: int, run_id: str, at_least_epoch: int, trainer: subprocess.Popen) -> int:
    """Load the Runs page and wait until its table lists ``run_id`` at ``at_least_epoch`` or later.

    The table is a canvas; Streamlit's grid mirrors its cells in an accessible table, read here.
    Returns the epoch the page shows.
    """
    page.goto(f"http://127.0.0.1:{port}/", timeout=START_TIMEOUT_S * 1000)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        cells = [text.strip() for text in page.locator('[role="gridcell"]').all_text_contents()]
        epochs = [int(m.group(1)) for m in map(re.compile(r"^(\d+)/\d+$").match, cells) if m]
        # The id shows in the run column's link (a run without a name of its own has an empty name cell).
        if any(run_id in cell for cell in cells) and epochs and epochs[0] >= at_least_epoch:
            return epochs[0]
        assert trainer.poll() is None, "the trainer exited while the dashboard loaded"
        time.sleep(0.25)
    pytest.fail(f"the Runs page never showed {run_id} at epoch {at_least_epoch} or later; "
                f"it shows: {page.locator('body').inner_text()[:2000]}")


def test_closing_the_browser_and_restarting_or_killing_the_dashboard_leaves_the_run_untouched(
        store, dashboards, trainers, browser_path):
    from playwright.sync_api import sync_playwright

    runs_dir, port = store.runs_dir, free_port()
    trainer = start_trainer(runs_dir, 'model_name="mlp"', "num_epochs=300")  # ~1 s an epoch: ended below
    trainers.append(trainer)
    # Started together to save time: the dashboard opens the database only when a page first asks.
    dashboard = dashboards.spawn(port)
    run_id = wait_for(lambda: only_run(store), "the run is created", trainer, timeout=START_TIMEOUT_S)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # so the dashboard's "= WAL" is a no-op

    def advances(since: int) -> int:
        """Wait until the trainer logs an epoch after ``since``; check it is still a live, healthy run."""
        epoch = wait_for(lambda: (e := epochs_logged(store, run_id)) > since and e, f"an epoch after {since}", trainer)
        assert store.run(run_id)["status"] == "running"
        return epoch

    dashboards.wait_until_served(dashboard, port)
    with sync_playwright() as playwright:
        # The browser closed mid-run: the session ends, the server and the run go on.
        browser = launch(playwright, browser_path)
        shown = show_runs_page(browser.new_page(), port, run_id, 1, trainer)
        browser.close()
        epoch = advances(shown)
        assert dashboard.poll() is None and healthy(port)

        # The dashboard stopped (SIGTERM) with a session open, then started again on the same port.
        browser = launch(playwright, browser_path)
        page = browser.new_page()
        show_runs_page(page, port, run_id, epoch, trainer)
        dashboards.signal_group(dashboard, signal.SIGTERM, port)
        epoch = advances(epochs_logged(store, run_id))
        dashboard = dashboards.start(port)
        epoch = show_runs_page(page, port, run_id, epoch, trainer)  # rows written while it was down

        # The dashboard killed outright (SIGKILL), then started again.
        dashboards.signal_group(dashboard, signal.SIGKILL, port)
        epoch = advances(epochs_logged(store, run_id))
        dashboards.start(port)
        show_runs_page(page, port, run_id, epoch, trainer)
        browser.close()

    # End the run at the next epoch boundary but one, the way the dashboard's form would.
    last = epochs_logged(store, run_id) + 1
    request_change(runs_dir / run_id / "config.json", {"num_epochs": last}, source="user", reason="enough")
    assert trainer.wait(timeout=120) == 0, trainer.stdout.read()

    # The run is whole: finished, every epoch of every series, nothing went wrong.
    run = store.run(run_id)
    assert run["status"] == "finished" and not run["error"]
    final = store.current_config(run_id)["num_epochs"]
    assert final == epochs_logged(store, run_id) >= last
    metrics = store.metrics([run_id])
    series = metrics.groupby(["split", "name"])["epoch"].apply(list).to_dict()
    assert len(series) >= 4 and {"train", "val"} <= {split for split, _ in series}
    gaps = {key: epochs for key, epochs in series.items() if epochs != list(range(1, final + 1))}
    assert not gaps, gaps
    events = store.events(run_id)
    bad = events[events["level"].isin(["warning", "error"])]
    assert bad.empty, bad["message"].tolist()
    assert store.config_versions(run_id)["source"].tolist() == ["cli", "user"]  # only the start and our end
    assert len(store.runs()) == 1

    # The dashboard only read: no statement it prepared on the database writes.
    statements = dashboards.sql()
    connections = [fields for fields in statements if fields[1] == "connect"]
    assert len(connections) >= 3, statements  # one per dashboard started: the spy was in place
    assert any(fields[1] == str(sqlite3.SQLITE_SELECT) for fields in statements)
    writes = [fields for fields in statements if fields[1] != "connect" and not is_read(fields)]
    assert not writes, writes
    assert store.advice(run_id).empty  # what the dashboard writes when asked to advise (reports are the trainer's)


def is_read(fields: list[str]) -> bool:
    _, action, arg1, arg2 = fields
    if int(action) in READ_ACTIONS:
        return True
    if int(action) == sqlite3.SQLITE_PRAGMA:
        setting_wal = arg1 == "journal_mode" and arg2.lower() == "wal"
        return arg2 == "None" or arg1 in CONNECTION_PRAGMAS | SCHEMA_PRAGMAS or setting_wal
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_ending_the_dashboard_command_alone_also_ends_its_streamlit_server(store, dashboards, signum):
    port = free_port()
    dashboard = dashboards.start(port)
    dashboard.send_signal(signum)  # the command's own pid, as `kill PID` or a pid file would
    dashboard.wait(timeout=30)
    deadline = time.monotonic() + 10
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not port_open(port), "Streamlit outlived `tiller dashboard` and still serves the port"
