"""Issue 17, items 16 and 17: the Quickstart's commands as a new user runs them.

``tiller demo`` (the README's command) and ``tiller dashboard`` with a fresh HOME and no terminal
(stdin from /dev/null), without ``--no-browser``: they serve at once, open the browser themselves
($BROWSER here, a script that notes the URL), and print Tiller's lines only. A busy port fails the
command before anything trains, with a ``--port`` hint.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tiller.store import Store
from tests.test_dashboard_security import free_port, websocket_upgrade

SERVE_TIMEOUT_S = 90  # Streamlit starts in a few seconds; a loaded 2-core machine is slower
TILLER = Path(sys.executable).with_name("tiller")  # the console script `pip install -e .` made


def tiller_command(*args: str) -> list[str]:
    # The console script when installed (the README's command); the same entry point otherwise.
    return [str(TILLER), *args] if TILLER.exists() else [sys.executable, "-m", "tiller", *args]


def new_user_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A fresh HOME (no ~/.streamlit), no display, and a $BROWSER that only notes what it is asked to open."""
    home = tmp_path / "home"
    home.mkdir()
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{opened}"\n', encoding="utf-8")
    browser.chmod(0o755)
    env = {name: value for name, value in os.environ.items() if name not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(home), BROWSER=str(browser), OMP_NUM_THREADS="1")
    return env, opened


def served_page(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            return response.read().decode("utf-8", errors="replace")
    except OSError:
        return None


def run_started(runs_dir: Path) -> bool:
    if not (runs_dir / "tiller.db").exists():
        return False
    store = Store(runs_dir)
    try:
        return len(store.runs()) > 0
    finally:
        store.close()


@pytest.mark.parametrize("command", ["demo", "dashboard"])
def test_a_new_user_without_a_terminal_gets_the_dashboard_at_once_and_a_browser(tmp_path, command):
    env, opened = new_user_env(tmp_path)
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(tiller_command(command, "--port", str(port)), cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        while not (page := served_page(port)):
            assert proc.poll() is None, f"tiller {command} exited ({proc.returncode}) before serving:\n" + \
                "\n".join(proc.communicate())
            assert time.monotonic() - started < SERVE_TIMEOUT_S, "the dashboard did not answer"
            time.sleep(0.2)
        assert "<title>" in page and "streamlit" in page.lower()  # Streamlit's page, not an error
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert opened.read_text(encoding="utf-8").splitlines() == [url]  # once, with the URL
        # The same guard as `tiller dashboard`'s: another local page's socket is refused.
        assert websocket_upgrade(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{free_port()}") == 403
        if command == "demo":  # and it trains
            while not run_started(tmp_path / "runs"):
                assert proc.poll() is None and time.monotonic() - started < SERVE_TIMEOUT_S, "no run started"
                time.sleep(0.5)
    finally:
        if proc.poll() is not None:
            pass  # ended already: the assertion above says how
        elif command == "demo":
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says: the whole process group
        else:
            proc.send_signal(signal.SIGTERM)  # as a service manager or `kill PID` would
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    expected = [f"Tiller dashboard: {url}"]
    if command == "demo":
        expected.insert(0, "Tiller demo: training on scikit-learn's digits in the background "
                           f"(log: {tmp_path / 'runs' / 'demo-trainer.log'}).")
    assert out.splitlines() == expected
    # No email prompt, no usage-statistics notice, no advert, no traceback: only the refusal above.
    assert [line for line in err.splitlines() if not line.startswith("Tiller dashboard: refused websocket")] == []
    assert served_page(port) is None  # the server ended with it
    if command == "demo":
        store = Store(tmp_path / "runs")
        assert set(store.runs()["status"]) <= {"stopped", "finished"}  # its training ended with it
        store.close()


@pytest.mark.parametrize("command", ["demo", "dashboard"])
def test_a_busy_port_fails_before_anything_starts_with_a_port_hint(tmp_path, command):
    runs_dir = tmp_path / "runs"
    with socket.socket() as holder:  # another dashboard, or anything else, listening on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(tiller_command(command, "--port", str(port), "--no-browser", "--runs-dir",
                                               str(runs_dir)),
                                cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1
    assert result.stdout == ""  # no URL of the other server's page, no "training in the background"
    assert f"port {port} is already in use" in result.stderr
    assert f"tiller {command} --port " in result.stderr
    assert "Traceback" not in result.stderr
    assert not runs_dir.exists()  # the demo trained nothing


def test_a_port_out_of_range_is_a_usage_error(tmp_path):
    result = subprocess.run(tiller_command("dashboard", "--port", "70000"), cwd=tmp_path,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "a port is at most 65535" in result.stderr and "Traceback" not in result.stderr
