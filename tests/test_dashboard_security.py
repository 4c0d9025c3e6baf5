"""Issue 17, items 1 and 6: the dashboard answers only its own pages, and its pages load nothing
from anywhere else.

Real processes throughout: a trainer on scikit-learn's digits (a live run), ``tiller dashboard``,
a second web server on another port (a foreign origin, as any other local page would be), raw
sockets, and a headless Chromium driven by Playwright.
"""

import base64
import http.client
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tiller.dashboard.serve import ServedHosts, parse_origin
from tiller.store import Store
from tests.test_live_steering import ROOT, epochs_logged, only_run, start_trainer, wait_for
from tiller.trainer.steering.live_config import live_config_path, parse_live_file

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT_S = 90  # Streamlit and Chromium start slowly on a loaded 2-core machine
PAGES = {"Runs": "/", "Run": "/run", "Evaluation": "/evaluation", "Compare": "/compare"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        return http_get(port, "/_stcore/health")[0] == 200
    except OSError:
        return False


def http_get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names) of a GET sent to the dashboard with these headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host="Host" in headers)
        for name, value in headers.items():
            conn.putheader(name.replace("_", "-"), value)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status, {name.lower(): value for name, value in response.getheaders()}
    finally:
        conn.close()


def websocket_upgrade(port: int, host: str, origin: str | None) -> int:
    """The HTTP status a WebSocket handshake to the dashboard's stream gets (101: the socket opened)."""
    lines = [
        "GET /_stcore/stream HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(1024)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


PROXY_ORIGIN = "https://tiller.example.com"  # a reverse proxy's public address, given with --origin


class Served:
    """A live run (an MLP on the digits, about a second per epoch) and a ``tiller dashboard`` on it,
    which also answers pages of a reverse proxy (``--origin``)."""

    def __init__(self, tmp_path: Path):
        self.runs_dir, self.port, self.log = tmp_path / "runs", free_port(), tmp_path / "dashboard.log"
        self.trainer = start_trainer(self.runs_dir, "num_epochs=1000")
        self.store = Store(self.runs_dir)
        self.run_id = wait_for(lambda: only_run(self.store), "the run is created", self.trainer)
        wait_for(lambda: epochs_logged(self.store, self.run_id) >= 2, "two epochs", self.trainer)
        with open(self.log, "w", encoding="utf-8") as log:
            self.dashboard = subprocess.Popen(
                [sys.executable, "-m", "tiller", "dashboard", "--runs-dir", str(self.runs_dir),
                 "--port", str(self.port), "--no-browser", "--origin", PROXY_ORIGIN],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(self.port):
            assert self.dashboard.poll() is None, f"the dashboard exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"the dashboard did not answer:\n{self.output()}"
            time.sleep(0.2)
        self.origin = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def run(self) -> dict:
        return self.store.run(self.run_id)

    def close(self) -> None:
        for proc in (self.dashboard, self.trainer):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (self.dashboard, self.trainer):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.store.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    served = Served(tmp_path_factory.mktemp("served"))
    yield served
    served.close()


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


# ------------------------------------------------------------------ the Host names served (no processes)

@pytest.mark.parametrize("host_header, served", [
    ("localhost:8501", True), ("127.0.0.1:8501", True), ("[::1]:8501", True), ("LocalHost.:8501", True),
    ("localhost:8502", False), ("localhost", False), ("", False), (None, False),
    ("rebound.example:8501", False), ("attacker@localhost:8501", False), ("localhost:8501/x", False),
    ("127.0.0.2:8501", False), ("localhost:85O1", False),
])
def test_the_default_address_serves_only_the_loopback_names(host_header, served):
    assert ServedHosts("127.0.0.1", "127.0.0.1", 8501).serves(host_header) is served


def test_a_named_host_serves_its_name_and_address_and_a_wildcard_this_machines_names_and_addresses():
    named = ServedHosts("tiller.internal", "192.0.2.2", 8501)
    assert named.serves("tiller.internal:8501") and named.serves("192.0.2.2:8501")
    assert not named.serves("rebound.example:8501")
    anywhere = ServedHosts("0.0.0.0", "0.0.0.0", 8501)
    assert anywhere.serves(f"{socket.gethostname()}:8501")
    assert anywhere.serves("127.0.0.2:8501")  # an address of this machine (all of 127/8 is)
    assert not anywhere.serves("203.0.113.7:8501")  # not this machine's (a documentation address)
    assert not anywhere.serves("rebound.example:8501")  # a name that merely resolves here: DNS rebinding


def test_a_trusted_origin_is_answered_and_its_host_name_served():
    hosts = ServedHosts("127.0.0.1", "127.0.0.1", 8501, origins=("HTTPS://Tiller.Example.com:443/",))
    assert hosts.origins == {"https://tiller.example.com"}
    assert hosts.serves("tiller.example.com") and hosts.serves("tiller.example.com:443")
    assert not hosts.serves("tiller.example.com:8501") and not hosts.serves("other.example.com")
    assert hosts.trusts("https://tiller.example.com", "127.0.0.1:8501")
    assert not hosts.trusts("http://tiller.example.com", "tiller.example.com")  # another scheme
    assert not hosts.trusts("null", "tiller.example.com")
    with_port = ServedHosts("127.0.0.1", "127.0.0.1", 8501, origins=("http://10.1.2.3:9000",))
    assert with_port.serves("10.1.2.3:9000") and not with_port.serves("10.1.2.3")


@pytest.mark.parametrize("text", ["ftp://x.example", "https://x.example/path", "x.example", "https://", "null",
                                  "https://user@x.example", "https://x.example:99999"])
def test_what_is_not_an_origin_is_refused(text):
    with pytest.raises(ValueError):
        parse_origin(text)


@pytest.mark.parametrize("origin, host_header, same", [
    ("http://localhost:8501", "localhost:8501", True), ("http://LOCALHOST:8501", "localhost:8501", True),
    ("http://localhost", "localhost:80", True),
    ("http://localhost:8501", "127.0.0.1:8501", False), ("http://localhost:8502", "localhost:8501", False),
    ("https://localhost:8501", "localhost:8501", False), ("null", "localhost:8501", False),
    ("http://user@localhost:8501", "localhost:8501", False),
])
def test_same_origin_is_scheme_host_and_port(origin, host_header, same):
    assert ServedHosts.same_origin(origin, host_header) is same


# ------------------------------------------------------------------ raw requests


@pytest.mark.parametrize("host, origin, expected", [
    pytest.param("127.0.0.1:{port}", "http://127.0.0.1:{port}", 101, id="its own page"),
    pytest.param("localhost:{port}", "http://localhost:{port}", 101, id="its own page as localhost"),
    pytest.param("127.0.0.1:{port}", None, 101, id="no Origin: not a browser page"),
    pytest.param("127.0.0.1:{port}", "http://127.0.0.1:{other}", 403, id="a page on another local port"),
    pytest.param("localhost:{port}", "http://localhost:{other}", 403, id="localhost, another port"),
    pytest.param("127.0.0.1:{port}", "http://localhost:{port}", 403, id="Origin and Host disagree"),
    pytest.param("rebound.example:{port}", "http://rebound.example:{port}", 403, id="DNS rebinding"),
    pytest.param("rebound.example:{port}", None, 403, id="a foreign Host"),
    pytest.param("127.0.0.1:{other}", "http://127.0.0.1:{other}", 403, id="another port in Host"),
    pytest.param("127.0.0.1:{port}", "null", 403, id="an opaque origin (sandboxed frame, file)"),
    pytest.param("127.0.0.1:{port}", "https://127.0.0.1:{port}", 403, id="another scheme"),
    pytest.param("tiller.example.com", PROXY_ORIGIN, 101, id="--origin, through a proxy passing Host on"),
    pytest.param("127.0.0.1:{port}", PROXY_ORIGIN, 101, id="--origin, through a proxy rewriting Host"),
    pytest.param("tiller.example.com", "https://rebound.example", 403, id="another site under the proxy's name"),
    pytest.param("tiller.example.com:8443", None, 403, id="the proxy's name, another port"),
])
def test_the_stream_opens_only_to_the_dashboards_own_origin_and_host(served, host, origin, expected):
    fill = {"port": served.port, "other": free_port()}
    assert websocket_upgrade(served.port, host.format(**fill), origin and origin.format(**fill)) == expected


def test_http_answers_only_its_own_pages_and_forbids_framing(served):
    own_host = f"127.0.0.1:{served.port}"
    status, headers = http_get(served.port, "/")
    assert status == 200
    assert headers["content-security-policy"] == "frame-ancestors 'none'"
    assert headers["x-frame-options"] == "DENY"

    assert http_get(served.port, "/", Host=f"rebound.example:{served.port}")[0] == 403  # DNS rebinding
    assert http_get(served.port, "/_stcore/host-config", Host=own_host,
                    Origin=f"http://127.0.0.1:{free_port()}")[0] == 403  # a fetch from another local page
    # A script or image tag on another local page sends no Origin; the browser says where it comes from.
    assert http_get(served.port, "/favicon.png", Host=own_host, Sec_Fetch_Site="same-site",
                    Sec_Fetch_Mode="no-cors", Sec_Fetch_Dest="image")[0] == 403
    assert http_get(served.port, "/", Host=own_host, Sec_Fetch_Site="cross-site",
                    Sec_Fetch_Mode="navigate", Sec_Fetch_Dest="iframe")[0] == 403
    # A link to the dashboard, followed from another site, opens it.
    assert http_get(served.port, "/", Host=own_host, Sec_Fetch_Site="cross-site",
                    Sec_Fetch_Mode="navigate", Sec_Fetch_Dest="document")[0] == 200


# ------------------------------------------------------------------ a real second origin, a real browser

ATTACK_PAGE = """<!doctype html>
<title>another page on this machine</title>
<script>
  window.socketResult = "pending";
  const socket = new WebSocket("ws://127.0.0.1:{port}/_stcore/stream");
  socket.onopen = () => {{ window.socketResult = "open"; }};
  socket.onclose = (event) => {{
    if (window.socketResult === "pending") window.socketResult = "closed " + event.code;
  }};
</script>
<iframe id="dashboard" src="http://127.0.0.1:{port}/" width="1000" height="600"></iframe>
"""


@pytest.fixture
def foreign_origin(tmp_path, served):
    """A plain web server on another port of this machine, serving a page that goes for the dashboard."""
    (tmp_path / "attack.html").write_text(ATTACK_PAGE.format(port=served.port), encoding="utf-8")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def dashboard_frames(page, origin: str) -> list:
    return [frame for frame in page.frames if frame.url.startswith(origin)]


def test_a_page_on_another_port_can_neither_open_the_stream_nor_frame_the_dashboard(served, foreign_origin,
                                                                                    chromium):
    from playwright.sync_api import expect

    epoch_before = epochs_logged(served.store, served.run_id)
    page = chromium.new_page()
    sockets = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(f"{foreign_origin}/attack.html")
        page.wait_for_function("window.socketResult !== 'pending'", timeout=30_000)
        assert f"ws://127.0.0.1:{served.port}/_stcore/stream" in sockets  # the browser did try
        assert page.evaluate("window.socketResult") == "closed 1006"  # refused at the handshake
        # The frame's navigation is blocked: Chromium puts its error page in the frame instead.
        page.wait_for_timeout(3000)
        assert dashboard_frames(page, served.origin) == []
        assert any(frame.url.startswith("chrome-error://") for frame in page.frames[1:])

        # The dashboard itself, opened in the same browser, works: its stream opens and the run shows.
        page.goto(f"{served.origin}/run")
        expect(page.get_by_text(served.run_id).first).to_be_visible(timeout=START_TIMEOUT_S * 1000)
    finally:
        page.close()

    wait_for(lambda: epochs_logged(served.store, served.run_id) >= epoch_before + 2, "two more epochs",
             served.trainer)
    assert served.run()["status"] == "running"
    live = parse_live_file(live_config_path(served.runs_dir, served.run_id).read_text(encoding="utf-8"))
    assert live.control == "run"
    assert "refused websocket '/_stcore/stream'" in served.output()  # said, for whoever wonders why


def test_every_page_loads_only_from_the_dashboard(served, chromium):
    """Offline: not one request from any of the four pages leaves the dashboard's origin (requests
    elsewhere are recorded, then aborted, so the test itself never reaches the network)."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    elsewhere: list[str] = []

    def keep_local(route):
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob") or url.startswith(served.origin + "/"):
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    context.route("**/*", keep_local)
    page = context.new_page()
    try:
        for title, path in PAGES.items():
            page.goto(f"{served.origin}{path}", timeout=START_TIMEOUT_S * 1000)
            # The page is drawn: the navigation is there, with this page's link current.
            expect(page.get_by_role("link", name=title).first).to_be_visible(timeout=START_TIMEOUT_S * 1000)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)  # fragments and charts that load late
            icon = page.evaluate("document.querySelector(\"link[rel='shortcut icon']\").href")
            assert icon.startswith(served.origin + "/"), f"{title}: the tab icon comes from {icon}"
    finally:
        context.close()
    assert elsewhere == []
