"""`tiller demo` end to end: background training plus a dashboard that answers."""

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

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def wait_for(condition, what, proc, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, f"demo exited ({proc.returncode}) before {what}"
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def runs_by_model(store):
    return {row["model"]: row for row in store.runs().to_dict("records")}


def test_demo_trains_serves_and_shuts_down_cleanly(tmp_path):
    port, runs_dir = free_port(), tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiller", "demo", "--no-browser", "--port", str(port), "--runs-dir", str(runs_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        wait_for(lambda: dashboard_healthy(port), "the dashboard", proc)
        store = Store(runs_dir)
        wait_for(lambda: runs_by_model(store).get("mlp", {}).get("status") == "finished", "the baseline", proc)
        wait_for(lambda: (runs_by_model(store).get("resnet18", {}).get("epoch") or 0) >= 1,
                 "the ResNet's first epoch", proc)
        assert runs_by_model(store)["resnet18"]["status"] == "running"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert runs_by_model(store)["resnet18"]["status"] == "stopped"
    assert not dashboard_healthy(port)
    assert "Tiller dashboard: http://localhost:" in proc.stdout.read()
