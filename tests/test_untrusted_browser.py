"""A real browser opens pages full of hostile text and loads nothing it names, follows no data: link,
and draws no chart HTML from a name.

A store is seeded with runs whose names, reason, advisor analysis, events and reports hold every
trick (tests/hostile.py), their addresses pointing at a local HTTP server that notes each request.
``tiller dashboard`` serves it (a subprocess, started as users start it); headless Chromium opens
the Runs page, the Run page with every expander open (the change reports among them) and the
Compare page. The server must see no request, the pages hold no ``data:``/``javascript:`` link
and no ``<img>`` of the trap, and no chart's SVG holds an ``<a>`` or a name's 120 px text.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tiller.store import Store
from tests.hostile import RUN, seed_hostile_runs
from tests.test_dashboard_restart import free_port, healthy

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT_S = 90
SETTLE_S = 3  # after the page is still: time for any image or link prefetch to go out


class Recorder:
    """A local HTTP server that notes every request it gets (nothing should come)."""

    def __init__(self):
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_POST = do_HEAD = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def chromium():
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return CHROMIUM


@pytest.fixture
def recorder():
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def dashboard(tmp_path, recorder):
    """``tiller dashboard`` on a store of hostile runs; yields its URL."""
    runs_dir = tmp_path / "runs"
    store = Store(runs_dir)
    seed_hostile_runs(store, recorder.address)
    store.close()
    port, log = free_port(), open(tmp_path / "dashboard.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "tiller", "dashboard", "--runs-dir", str(runs_dir),
                             "--port", str(port), "--no-browser"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(port):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "dashboard.log").read_text()
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def still(page) -> None:
    """Wait until nothing on the page is being redrawn."""
    from playwright.sync_api import expect

    expect(page.locator('[data-stale="true"]')).to_have_count(0, timeout=START_TIMEOUT_S * 1000)
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0, timeout=START_TIMEOUT_S * 1000)


def open_every_expander(page, most: int = 20) -> int:
    closed = page.locator('[data-testid="stExpander"] details:not([open]) > summary')
    opened = 0
    while closed.count() and opened < most:
        closed.first.click()
        opened += 1
        still(page)
    return opened


def live_links(page, trap: str) -> list[str]:
    """Links to anything but http(s) (a data: page, a script), and any image, frame or object of the
    trap. An http(s) address in text may still be a link (Streamlit's GFM links bare URLs): it needs
    a click, and the recorder sees none."""
    return page.evaluate("""(trap) => [
        ...[...document.querySelectorAll('a[href]')].filter(a => !/^https?:$/.test(new URL(a.href).protocol)),
        ...[...document.querySelectorAll('img, iframe, object, embed, image, video, audio, source, link')]
            .filter(e => e.outerHTML.includes(trap)),
    ].map(e => e.outerHTML)""", trap)


def test_hostile_text_makes_the_browser_load_nothing(dashboard, recorder, chromium):
    from playwright.sync_api import expect, sync_playwright

    trap = recorder.address
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))

        page.goto(dashboard + "/", timeout=START_TIMEOUT_S * 1000)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=START_TIMEOUT_S * 1000)
        still(page)

        page.goto(f"{dashboard}/run?run={RUN}", timeout=START_TIMEOUT_S * 1000)
        expect(page.get_by_role("heading", name="Adjustment reports")).to_be_visible(timeout=START_TIMEOUT_S * 1000)
        expect(page.get_by_text("html-img").first).to_be_attached(timeout=START_TIMEOUT_S * 1000)  # the analysis
        still(page)
        assert open_every_expander(page) >= 2  # the reports (Tiller's and the raw one), earlier advice…
        still(page)
        expect(page.get_by_text("reference").first).to_be_attached()  # a report's body is drawn
        time.sleep(SETTLE_S)
        run_page_links = live_links(page, trap)

        page.goto(dashboard + "/compare", timeout=START_TIMEOUT_S * 1000)
        expect(page.get_by_role("heading", name="Compare runs")).to_be_visible(timeout=START_TIMEOUT_S * 1000)
        plots = page.locator(".js-plotly-plot")
        expect(plots.first).to_be_visible(timeout=START_TIMEOUT_S * 1000)
        still(page)
        expect(page.locator(".js-plotly-plot .legendtext").first).to_be_attached()
        time.sleep(SETTLE_S)
        legend = page.locator(".js-plotly-plot .legendtext").all_text_contents()
        assert any('<a href="http://' in text for text in legend), legend  # the name, shown as typed
        chart_links = page.locator(".js-plotly-plot svg a").count()
        big_text = page.locator('.js-plotly-plot svg [style*="120px"]').count()
        compare_page_links = live_links(page, trap)
        browser.close()

    assert recorder.hits == [], recorder.hits
    assert run_page_links == [] and compare_page_links == []
    assert chart_links == 0 and big_text == 0
    assert not [url for url in requests if trap in url or url.startswith(("data:", "javascript:"))]
