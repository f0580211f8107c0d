"""A small HTTP server for operational endpoints: metrics, health, supervisor state.

Standard library only (a thread per request, GET only, no body parsing), so that it
costs nothing on a worker's event loop and cannot be slowed by it: a stuck loop still
answers ``/health/live`` — with 503. It binds locally unless told otherwise; several
processes of one worker may share the port (``SO_REUSEPORT``) and answer for the group.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from streams.exceptions import PortInUse
from streams.health import Health, group_health
from streams.metrics import CONTENT_TYPE_LATEST, exposition, multiprocess_dir

__all__ = ["OpsServer", "Response", "Route", "json_response", "worker_routes"]

log = logging.getLogger(__name__)

#: ``(status, content type, body)``.
Response = tuple[int, str, bytes]
Route = Callable[[], Response]


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer."""
    return status, "application/json", json.dumps(data, default=str).encode()


def worker_routes(health: Health) -> dict[str, Route]:
    """``/metrics``, ``/health/live``, ``/health/ready`` and ``/health`` of a worker."""
    shared = multiprocess_dir()

    def state() -> dict[str, Any]:
        return group_health(health, shared)

    def live() -> Response:
        snap = state()
        return json_response(snap, 200 if snap["live"] else 503)

    def ready() -> Response:
        snap = state()
        return json_response(snap, 200 if snap["ready"] else 503)

    return {
        "/metrics": lambda: (200, CONTENT_TYPE_LATEST, exposition()),
        "/health/live": live,
        "/health/ready": ready,
        "/health": lambda: json_response(state()),
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    reuse_port = False

    def server_bind(self) -> None:
        if self.reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


class OpsServer:
    """Serves a route table on ``host:port`` from a daemon thread."""

    def __init__(
        self, host: str, port: int, routes: dict[str, Route], *, name: str = "ops"
    ) -> None:
        self.host, self.port, self.routes, self.name = host, port, routes, name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, *, reuse_port: bool = False) -> OpsServer:
        """Bind and serve.

        Raises:
            PortInUse: the address is taken (by another process of another worker).
        """
        routes = self.routes

        class Handler(BaseHTTPRequestHandler):
            server_version = "streamrec-ops"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/") or "/"
                route = routes.get(path)
                if route is None:
                    status, ctype, body = json_response(
                        {"error": "not found", "paths": sorted(routes)}, 404
                    )
                else:
                    try:
                        status, ctype, body = route()
                    except Exception as exc:  # an endpoint must not take the server down
                        log.exception("ops endpoint %s failed", path)
                        status, ctype, body = json_response({"error": str(exc)}, 500)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would drown the log

        server_class = type("OpsHttpServer", (_Server,), {"reuse_port": reuse_port})
        try:
            server = server_class((self.host, self.port), Handler)
        except OSError as exc:
            raise PortInUse(
                f"{self.name}: cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "another process holds it — set STREAMREC_METRICS_PORT to another range, "
                "or 0 to turn the endpoints off"
            ) from exc
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        log.info(
            "%s endpoints on http://%s:%d (%s)",
            self.name,
            self.host,
            self.port,
            ", ".join(sorted(self.routes)),
        )
        return self

    @property
    def url(self) -> str:
        """Base URL of the endpoints."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
