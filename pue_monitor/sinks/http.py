"""The service's one local HTTP port: ``/metrics`` (prometheus-client's WSGI app) and small
JSON routes beside it (``/status``, ``/healthz``, ``/readyz``: :mod:`pue_monitor.sinks.status`),
served by the standard library's WSGI server in a daemon thread, a thread per request.

One port for operators, as exporters do: whatever can scrape the metrics can ask the status.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["Route", "serve"]

log = logging.getLogger(__name__)

#: a JSON route: called in a server thread, returns (HTTP status code, JSON-serialisable body)
Route = Callable[[], tuple[int, Any]]
_App = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every 15 s would fill the journal."""


def _app(metrics: _App, routes: Mapping[str, Route]) -> _App:
    failed: set[str] = set()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        route = routes.get(path.rstrip("/") or path)
        if route is None:
            return metrics(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
            return [f"{path}: use GET\n".encode()]
        try:
            code, body = route()
            data = (json.dumps(body, indent=1, allow_nan=False) + "\n").encode()
        except Exception as exc:  # a bug in a route must not kill the thread nor hide the cause
            if path not in failed:
                failed.add(path)
                log.exception("HTTP %s failed", path)
            code, data = 500, (json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n").encode()
        start_response(
            f"{code} {HTTPStatus(code).phrase}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [b""] if method == "HEAD" else [data]

    return app


def serve(host: str, port: int, metrics: _App, routes: Mapping[str, Route]) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``routes`` (exact paths) and ``metrics`` (every other path) on ``host:port``
    (0: a free port); raises OSError when the address cannot be bound."""

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a slow client never holds up the exit

    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    Server.address_family = family
    httpd = make_server(str(sockaddr[0]), port, _app(metrics, routes), Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name=f"http {host}:{port}", daemon=True)
    thread.start()
    return httpd, thread
