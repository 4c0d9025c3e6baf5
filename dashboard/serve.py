"""Serve Tiller's dashboard: Streamlit's app, on a socket bound before anything starts, behind a
guard that answers only the dashboard's own pages.

``tiller dashboard`` and ``tiller demo`` call :func:`listen` first (a busy port fails the command
before the demo trains), start ``python -m tiller.dashboard.serve --fd N`` with that socket, wait until
it answers (:func:`wait_until_serving`), then print the URL and open the browser. The child runs
``dashboard/app.py`` as a Streamlit ``st.App`` under uvicorn, with Tiller's Streamlit options set
in-process: no ``streamlit run``, so no first-run email prompt, no usage-statistics notice and no
advert, with or without a terminal.

Why a guard of our own: Streamlit accepts a WebSocket whose Origin is any localhost or 127.0.0.1
port (another local page may steer a run), or whose Origin merely matches the Host header (a
DNS-rebinding page sends both), and its XSRF token guards only the login cookie, not the session.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
import threading
import time
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

APP_SCRIPT = Path(__file__).resolve().parent / "app.py"

# Set in-process over the user's own Streamlit config files: these make the dashboard Tiller's.
STREAMLIT_OPTIONS = {
    "browser.gatherUsageStats": False,  # nothing sent to Streamlit's metrics host (the page works offline)
    "client.toolbarMode": "minimal",  # no "Deploy" button: this is a local tool
    "server.headless": True,  # Tiller opens the browser itself, once the server answers
    "server.fileWatcherType": "none",  # installed code does not change under a running server; watching costs CPU
    "server.runOnSave": False,
}

# On every HTTP answer: no page of another origin may frame the dashboard (a click in a hidden
# frame would steer a run) or embed its files.
GUARD_HEADERS = [
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
BACKLOG = 128
PORT_SEARCH = 20  # how far above a busy port to look for a free one to suggest
REFUSALS_REPORTED = 20  # distinct refusals said on stderr; more would only let a hostile page flood the terminal


class CannotListen(Exception):
    """The dashboard's address cannot be served (an unknown host name, a port out of range...)."""


class PortInUse(CannotListen):
    def __init__(self, port: int, free_port: int | None):
        super().__init__(f"port {port} is already in use")
        self.port, self.free_port = port, free_port


# ------------------------------------------------------------------ the parent: bind, wait, open

def listen(host: str, port: int) -> socket.socket:
    """The dashboard's listening socket, bound now, so that a busy port is found before anything
    else starts; browsers that connect early wait in its backlog until the server answers."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError, OverflowError) as exc:
        raise CannotListen(f"cannot listen on {host!r} port {port}: {getattr(exc, 'strerror', None) or exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        # A dashboard restarted at once may take its port back from connections still in TIME_WAIT;
        # on Linux this never lets two servers listen on one port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(port, free_port_above(family, address[0], port)) from None
        raise CannotListen(f"cannot listen on {host!r} port {port}: {exc.strerror or exc}") from None
    return sock


def free_port_above(family: int, address: str, port: int) -> int | None:
    """A port that is free right now, to suggest in the message about a busy one."""
    for candidate in range(port + 1, min(port + 1 + PORT_SEARCH, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, candidate))
                return candidate
            except OSError:
                continue
    return None


def server_command(sock: socket.socket, host: str, origins: list[str]) -> list[str]:
    """The child process that serves on ``sock`` (pass it with ``pass_fds``)."""
    command = [sys.executable, "-m", "tiller.dashboard.serve", "--fd", str(sock.fileno()), "--host", host]
    for origin in origins:
        command += ["--origin", origin]
    return command


def url_for(host: str, port: int) -> str:
    """What to open: the loopback and wildcard addresses as ``localhost``, which every browser knows."""
    name = "localhost" if is_wildcard(host) or host in ("127.0.0.1", "localhost") else host
    return f"http://{bracketed(name)}:{port}"


def health_url(sock: socket.socket) -> str:
    """The server's health check, at the address it is bound to (loopback for a wildcard)."""
    address, port = sock.getsockname()[:2]
    if is_wildcard(address):
        address = "::1" if sock.family == socket.AF_INET6 else "127.0.0.1"
    return f"http://{bracketed(address)}:{port}/_stcore/health"


def wait_until_serving(url: str, server_exited: Callable[[], bool]) -> bool:
    """Wait until the server answers ``url``; False if it ended first."""
    while not server_exited():
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def open_in_browser(url: str) -> None:
    """Open ``url`` in the user's browser, in the background: a browser command that waits must
    not hold up the dashboard, and a machine without a browser only misses the window.

    On a Linux machine with no display and no ``$BROWSER``, Python's webbrowser would fall back to
    a text browser (lynx, w3m) that takes over the terminal: nothing is opened there."""
    if sys.platform.startswith("linux") and not any(
            os.environ.get(name) for name in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")):
        return
    threading.Thread(target=_open_quietly, args=(url,), name="open-browser", daemon=True).start()


def _open_quietly(url: str) -> None:
    import webbrowser

    try:
        webbrowser.open(url)
    except (webbrowser.Error, OSError):
        pass  # no browser: the URL is printed, and that is enough


# ------------------------------------------------------------------ the guard

def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


@lru_cache(maxsize=256)
def is_local_address(name: str) -> bool:
    """Whether ``name`` is an IP address of this machine (it can be bound to)."""
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name, not an address: only the listed names are served
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((name, 0))
            return True
        except OSError:
            return False


DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(text: str) -> str:
    """A browser origin, ``scheme://host[:port]``, as browsers send it (lower case, no default
    port); ValueError if ``text`` is not one."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if (scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None
            or parts.password is not None or parts.path not in ("", "/") or parts.query or parts.fragment):
        raise ValueError(f"not an origin (scheme://host[:port]): {text!r}")
    port = parts.port  # ValueError when it is not a number in range
    shown_port = "" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{bracketed(parts.hostname.lower().rstrip('.'))}{shown_port}"


def host_and_port(value: str | None, default_port: int | None = None) -> tuple[str, int | None] | None:
    """``(host, port)`` of a Host header or an origin's authority, lower case; None if malformed."""
    if not value:
        return None
    try:
        parts = urlsplit(f"//{value}")
        port = parts.port if parts.port is not None else default_port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None or parts.path:
        return None
    return parts.hostname.lower().rstrip("."), port


class ServedHosts:
    """The Host names the dashboard answers to: a DNS-rebinding page reaches the port under a
    name of its own, and is refused for it.

    ``localhost`` and the loopback addresses, the ``--host`` value and the address bound to, at
    the dashboard's port; with a wildcard ``--host`` (0.0.0.0, ::), also this machine's names and
    any of its addresses. ``origins`` (``--origin``: a reverse proxy's public address) are pages
    the dashboard answers too, and their host names are served, for a proxy that passes Host on."""

    def __init__(self, host: str, bound_address: str, port: int, origins: tuple[str, ...] = ()):
        self.port = port
        self.wildcard = is_wildcard(host) or is_wildcard(bound_address)
        names = {"localhost", "127.0.0.1", "::1", host, bound_address}
        if self.wildcard:
            names |= {socket.gethostname(), socket.getfqdn()}
        self.names = {name.lower().rstrip(".") for name in names if name}
        self.origins = frozenset(parse_origin(origin) for origin in origins)
        self.proxied = set()  # (name, port) of the trusted origins, as a Host header gives them
        for origin in self.origins:
            scheme, _, authority = origin.partition("://")
            name, port_given = host_and_port(authority)
            self.proxied |= {(name, port_given)} if port_given else {(name, None), (name, DEFAULT_PORTS[scheme])}

    def serves(self, host_header: str | None) -> bool:
        if host_and_port(host_header) in self.proxied:
            return True
        parsed = host_and_port(host_header, default_port=80)
        if parsed is None or parsed[1] != self.port:
            return False
        name = parsed[0]
        return name in self.names or (self.wildcard and is_local_address(name))

    def trusts(self, origin: str, host_header: str) -> bool:
        """Whether a request's Origin is one of the dashboard's pages: its own, or a trusted origin."""
        try:
            if parse_origin(origin) in self.origins:
                return True
        except ValueError:
            return False
        # Under a trusted origin's name only that origin is the dashboard's own (not its http twin).
        return self.same_origin(origin, host_header) and host_and_port(host_header) not in self.proxied

    @staticmethod
    def same_origin(origin: str, host_header: str) -> bool:
        """Whether a request's Origin is the dashboard's own page: http, and the very host and port
        the request was sent to (an Origin of ``null``, another port or another name is not)."""
        scheme, sep, authority = origin.partition("://")
        if not sep or scheme.lower() != "http":
            return False
        origin_address = host_and_port(authority, default_port=80)
        return origin_address is not None and origin_address == host_and_port(host_header, default_port=80)


def refusal(hosts: ServedHosts, headers, websocket: bool) -> str | None:
    """Why a request is not the dashboard's own, or None when it is."""
    host, origin = headers.get("host"), headers.get("origin")
    if not hosts.serves(host):
        return f"Host {host!r} is not a name this dashboard serves"
    # Browsers send Origin with every WebSocket and every cross-origin request; a client that
    # sends none is not a page in a browser, so no other site can be acting through it.
    if origin is not None and not hosts.trusts(origin, host):
        return f"Origin {origin!r} is not this dashboard's"
    if not websocket and embedded_by_another_site(headers):
        return f"a {headers.get('sec-fetch-dest')!r} request from another site's page"
    return None


def embedded_by_another_site(headers) -> bool:
    """A request another site's page made without an Origin (an image, a script, a frame):
    refused, except a top-level navigation, which is how a link to the dashboard opens it."""
    if headers.get("sec-fetch-site") not in ("cross-site", "same-site"):  # same-site: another localhost port
        return False
    return not (headers.get("sec-fetch-mode") == "navigate" and headers.get("sec-fetch-dest") == "document")


def as_own_origin(scope, headers):
    """``scope`` with an Origin that passed the guard shown to Streamlit as the Host's own.

    Streamlit checks Origin again, more loosely: it would refuse a trusted ``--origin`` behind a
    proxy that rewrites Host, after looking up this machine's external IP over the network."""
    host, origin = headers.get("host"), headers.get("origin")
    if origin is None or ServedHosts.same_origin(origin, host):
        return scope
    rewritten = [(name, f"http://{host}".encode("latin-1") if name == b"origin" else value)
                 for name, value in scope["headers"]]
    return {**scope, "headers": rewritten}


class SameOriginGuard:
    """ASGI middleware: answers only requests from the dashboard's own pages, for the Host names it
    serves (403 otherwise, a WebSocket included), and forbids framing on every HTTP answer."""

    def __init__(self, app, *, hosts: ServedHosts):
        self.app, self.hosts = app, hosts
        self.reported: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        reason = refusal(self.hosts, headers, websocket=scope["type"] == "websocket")
        if reason is not None:
            self.report(reason, scope)
            await (self.refuse_websocket if scope["type"] == "websocket" else self.refuse_http)(receive, send)
            return
        scope = as_own_origin(scope, headers)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        async def send_with_guard_headers(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + GUARD_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_guard_headers)

    @staticmethod
    async def refuse_websocket(receive, send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})  # before the handshake: uvicorn answers 403

    @staticmethod
    async def refuse_http(receive, send) -> None:
        body = b"Forbidden: the Tiller dashboard answers only its own pages.\n"
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())] + GUARD_HEADERS})
        await send({"type": "http.response.body", "body": body})

    def report(self, reason: str, scope) -> None:
        """Say on stderr, once per reason, what was refused (a page of another site, a proxy that
        rewrites Host): header values are printed with repr, so they cannot drive the terminal."""
        if reason in self.reported or len(self.reported) >= REFUSALS_REPORTED:
            return
        self.reported.add(reason)
        print(f"Tiller dashboard: refused {scope['type']} {scope.get('path', '')!r}: {reason}",
              file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the child: serve

def serve(sock: socket.socket, host: str, origins: tuple[str, ...] = ()) -> None:
    """Serve the dashboard on ``sock`` until SIGINT or SIGTERM (uvicorn ends it gracefully)."""
    import streamlit as st
    import uvicorn
    from starlette.middleware import Middleware
    from streamlit.web import bootstrap
    from streamlit.web.server.starlette.starlette_server import _get_uvicorn_config_kwargs

    bound_address, port = sock.getsockname()[:2]
    hosts = ServedHosts(host, bound_address, port, origins)
    app = st.App(APP_SCRIPT, middleware=[Middleware(SameOriginGuard, hosts=hosts)])
    # After App(), which tells Streamlit where the script is (its folder's config is read too).
    bootstrap.load_config_options({**STREAMLIT_OPTIONS, "server.address": host, "server.port": port})
    settings = {
        **_get_uvicorn_config_kwargs(),  # Streamlit's WebSocket settings (message size, pings)
        "log_config": None, "log_level": "warning",  # warnings and errors on stderr; no start-up chatter
        "timeout_graceful_shutdown": 5,  # open browser tabs do not hold up a stop
    }
    uvicorn.Server(uvicorn.Config(app, **settings)).run(sockets=[sock])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve Tiller's dashboard on an inherited listening socket "
                                                 "(started by `tiller dashboard` and `tiller demo`).")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket's file descriptor")
    parser.add_argument("--host", required=True, help="the --host the user gave (a Host name served)")
    parser.add_argument("--origin", action="append", default=[], help="another origin whose pages are answered")
    args = parser.parse_args(argv)
    try:
        serve(socket.socket(fileno=args.fd), args.host, tuple(args.origin))
    except KeyboardInterrupt:
        # Ctrl-C reaches the whole process group: uvicorn has shut down cleanly already, then
        # raises the signal again on its way out. The parent says what happened.
        pass


if __name__ == "__main__":
    main()
