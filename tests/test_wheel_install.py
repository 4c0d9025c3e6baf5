"""Issue 18: Tiller as a user gets it, from a built wheel (not the editable checkout).

The wheel's only top-level import name is ``tiller``. Installed into a fresh venv, it works from
a folder that holds the most common file names of the field, ``trainer.py``, ``store.py`` and
``dashboard.py`` (which would have shadowed the old top-level packages): ``import tiller``, the
example of a user's own loop, ``tiller demo`` and ``tiller dashboard``, whose pages a browser
loads. The venv gets its dependencies (torch, streamlit...) from this interpreter's
site-packages through a ``.pth`` file, so nothing is downloaded or installed twice.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tiller.store import Store
from tiller.store.store import OWN_LOOP

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SERVE_TIMEOUT_S = 120  # Streamlit starts in a few seconds; a loaded 2-core machine is slower
# What a user's own files would do if Tiller imported them instead of its own packages.
SHADOWS = {name: f'raise RuntimeError("Tiller imported the user\'s own {name}")\n'
           for name in ("trainer.py", "store.py", "dashboard.py")}
NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "runs", "sample-data",
              "tests", "benchmarks", "docs")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
            return response.read() == b"ok"
    except OSError:
        return False


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a clean copy of the checkout (no stale build/ folder can slip into it)."""
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(folder / "dist")], cwd=folder, env=dict(os.environ))
    [built] = (folder / "dist").glob("tiller-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh venv with the wheel installed (``pip install``, not ``-e``), and a user's folder."""
    folder = tmp_path_factory.mktemp("installed")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The dependencies: this interpreter's site-packages, after the venv's own (where the wheel goes).
    # Only its folders: .pth files in them (the checkout's editable install) are not read from here.
    ours = [path for path in sys.path if Path(path).name in ("site-packages", "dist-packages")]
    (site / "dependencies.pth").write_text("".join(f"{path}\n" for path in ours), encoding="utf-8")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        cwd=folder, env=dict(os.environ))

    user = folder / "user"  # the user's project: their own trainer.py, store.py, dashboard.py
    (user / "examples").mkdir(parents=True)
    for where in (user, user / "examples"):
        for name, text in SHADOWS.items():
            (where / name).write_text(text, encoding="utf-8")
    for name in ("imdb_own_loop.py", "imdb_own_loop.json"):
        shutil.copy(ROOT / "examples" / name, user / "examples" / name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "TILLER_RUNS_DIR"):
        env.pop(name, None)
    env["VIRTUAL_ENV"] = str(venv)
    return {"venv": venv, "python": python, "site": site, "user": user, "env": env,
            "tiller": venv / "bin" / "tiller"}


def test_the_wheel_holds_one_import_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [top_level] = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["tiller"]
    assert {name.split("/")[0] for name in names} == {"tiller", wheel.name.split("-py3")[0] + ".dist-info"}
    # Every module of the checkout's folders, under tiller/ (a sub-package missing from pyproject's list would not be).
    for folder, installed_as in [("src/tiller", "tiller"), ("trainer", "tiller/trainer"), ("store", "tiller/store"),
                                 ("dashboard", "tiller/dashboard")]:
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{installed_as}/{module.relative_to(ROOT / folder).as_posix()}" in names
    assert "tiller/dashboard/tiller-icon.png" in names


def test_the_installed_distribution_has_one_top_level_name(installed):
    """What pip installed (its RECORD) lies under ``tiller/``, besides the metadata and the script."""
    [record] = installed["site"].glob("tiller-*.dist-info/RECORD")
    paths = [line.split(",")[0] for line in record.read_text(encoding="utf-8").splitlines() if line]
    tops = {path.split("/")[0] for path in paths if not path.startswith("../")}
    assert tops == {"tiller", record.parent.name}
    assert [path for path in paths if path.startswith("../")] == ["../../../bin/tiller"]  # the console script


def test_import_tiller_beside_a_users_trainer_store_and_dashboard(installed):
    done = run([str(installed["python"]), "-c", "import tiller, tiller.trainer.engine.loop, tiller.dashboard.serve; "
                                                "print(tiller.__file__); print(tiller.run.__module__)"],
               cwd=installed["user"], env=installed["env"])
    where, module = done.stdout.split()
    assert Path(where).is_relative_to(installed["site"])  # the wheel's, not the checkout's
    assert module == "tiller.trainer.integrations.own_loop"


def test_the_own_loop_example_runs_from_the_users_folder(installed):
    user, env = installed["user"], installed["env"]
    run([str(installed["tiller"]), "make-sample-data"], cwd=user, env=env)
    done = run([str(installed["python"]), "examples/imdb_own_loop.py", "--runs-dir", "runs"], cwd=user, env=env)
    assert "Traceback" not in done.stderr
    assert own_loop_runs(user / "runs")["status"].tolist() == ["finished"]


def own_loop_runs(runs_dir: Path):
    store = Store(runs_dir)
    try:
        runs = store.runs()
        return runs[runs["trainer"] == OWN_LOOP]
    finally:
        store.close()


def serve(installed, *args: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([str(installed["tiller"]), *args, "--no-browser", "--port", str(port),
                             "--runs-dir", "runs"], cwd=installed["user"], env=installed["env"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while not healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"tiller {args[0]} did not serve ({proc.returncode}):\n{out}\n{err}")
        time.sleep(0.3)
    return proc, port


def demo_baseline_status(runs_dir: Path) -> str | None:
    if not (runs_dir / "tiller.db").exists():
        return None
    store = Store(runs_dir)
    try:
        runs = store.runs()
        return next(iter(runs[runs["model"] == "mlp"]["status"]), None)
    finally:
        store.close()


def test_tiller_demo_serves_trains_and_stops_from_the_users_folder(installed):
    runs_dir = installed["user"] / "runs"
    proc, port = serve(installed, "demo")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
            assert "<title>" in response.read().decode("utf-8", errors="replace")
        deadline = time.monotonic() + SERVE_TIMEOUT_S  # the baseline trains in seconds, with `python -m tiller train`
        while demo_baseline_status(runs_dir) != "finished":
            assert proc.poll() is None and time.monotonic() < deadline, \
                (runs_dir / "demo-trainer.log").read_text(encoding="utf-8", errors="replace")[-4000:]
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the dashboard and the demo's training stop with it
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"Tiller dashboard: http://localhost:{port}" in out
    assert "Traceback" not in err and "RuntimeError" not in err
    assert "Traceback" not in (runs_dir / "demo-trainer.log").read_text(encoding="utf-8", errors="replace")
    assert not healthy(port)


def test_tiller_dashboard_shows_the_pages_from_the_wheel(installed):
    """The installed app and its pages, opened in a browser: the Runs page and a run's page."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    runs_dir = installed["user"] / "runs"
    if not (runs_dir / "tiller.db").exists() or own_loop_runs(runs_dir).empty:
        test_the_own_loop_example_runs_from_the_users_folder(installed)  # this test alone: a run to show
    run_id = own_loop_runs(runs_dir)["id"].iloc[0]
    proc, port = serve(installed, "dashboard")
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"http://localhost:{port}/", timeout=SERVE_TIMEOUT_S * 1000)
            sync_api.expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=SERVE_TIMEOUT_S * 1000)
            page.goto(f"http://localhost:{port}/run?run={run_id}", timeout=SERVE_TIMEOUT_S * 1000)
            sync_api.expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=60_000)
            sync_api.expect(page.locator('[data-testid="stException"]')).to_have_count(0)
            browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "RuntimeError" not in err
