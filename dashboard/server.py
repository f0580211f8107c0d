"""The dashboard's HTTP server: pages, the try-it form, static CSS; auth and CSRF.

Standard library HTTP (a thread per request) and Jinja2 templates with autoescaping:
every value shown — item text, queries, user ids, prompts, dead-letter bytes — is
escaped as text. Security headers forbid framing and inline script; the pages have no
JavaScript at all (charts are SVG drawn on the server; the overview and serving pages
refresh themselves every few seconds).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape

from dashboard.catalog import Catalog
from dashboard.kafka_views import KafkaViews, TailIndex
from dashboard.pages import catalog_page, dlq_page, overview_page, serving_page
from dashboard.scrape import Scraper
from dashboard.security import Access
from dashboard.tryit import TryIt, new_conversation_id
from recsys.exceptions import ConfigurationError, StreamrecError
from recsys.records import RecResponse
from streams.exceptions import PortInUse
from streams.producer import registry_from_settings
from streams.serde import AvroSerde
from streams.settings import Settings

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_BYTES = 16_384


class Dashboard:
    """Everything behind the pages; :meth:`start` serves them."""

    def __init__(
        self,
        settings: Settings,
        *,
        supervisor_status: Callable[[], list[Any]] | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.host = host or settings.dashboard_host
        self.port = settings.dashboard_port if port is None else port
        self.access = Access(settings, self.host)  # refuses an open non-local bind
        self.supervisor_status = supervisor_status
        self.scraper = Scraper(settings)
        self.kafka = KafkaViews(settings)
        self.tail = TailIndex(
            settings,
            AvroSerde(registry_from_settings(settings)),
            idle_s=settings.dashboard_tail_idle_s,
        )
        self.catalog: Catalog | None = None
        self.tryit = TryIt(settings, self.tail)
        self.env = Environment(
            loader=PackageLoader("dashboard", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where the dashboard answers."""
        return f"http://{self.host}:{self.port}/"

    def start(self) -> Dashboard:
        """Bind, start the scraper, serve in a daemon thread (the tail starts when a page
        needs it).

        Raises:
            PortInUse: the port is taken.
            ConfigurationError: a non-local bind without credentials.
        """
        if self.settings.database_url is not None:
            self.catalog = Catalog(self.settings.database_url.get_secret_value())
        handler = _handler(self)
        try:
            server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise PortInUse(
                f"the dashboard cannot listen on {self.host}:{self.port} ({exc.strerror}); "
                "set STREAMREC_DASHBOARD_PORT (or --port)"
            ) from exc
        server.daemon_threads = True
        self.port = int(server.server_address[1])
        self._server = server
        self.scraper.start()
        threading.Thread(target=server.serve_forever, name="dashboard-http", daemon=True).start()
        log.info("dashboard on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close every client."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.scraper.stop()
        self.tail.stop()
        self.tryit.close()
        if self.catalog is not None:
            self.catalog.close()

    # ---- pages ------------------------------------------------------------------------
    def render(self, template: str, **context: Any) -> bytes:
        """A page (the layout adds the navigation and the CSRF token)."""
        page = self.env.get_template(template)
        return page.render(csrf=self.access.csrf_token, **context).encode()

    def page(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        """Status and HTML of a GET."""
        s = self.settings
        if path == "/":
            status = self.supervisor_status() if self.supervisor_status else None
            return 200, self.render(
                "overview.html",
                nav="overview",
                **overview_page(s, self.scraper, self.kafka, status),
            )
        if path == "/serving":
            return 200, self.render(
                "serving.html", nav="serving", **serving_page(self.scraper, self.tail)
            )
        if path == "/catalog":
            ctx = catalog_page(self.catalog, query.get("q"), query.get("item"))
            return 200, self.render("catalog.html", nav="catalog", **ctx)
        if path == "/try":
            ctx = self._try_context(query) | self._chat_context(query)
            return 200, self.render("tryit.html", nav="try", **ctx)
        if path == "/dlq":
            return 200, self.render(
                "dlq.html", nav="dlq", **dlq_page(self.kafka, query.get("topic"))
            )
        return 404, self.render("error.html", nav="", message=f"no page at {path}")

    def _try_context(self, form: dict[str, str], result: Any = None) -> dict[str, Any]:
        users: list[dict[str, Any]] = []
        if self.catalog is not None:
            try:
                users = self.catalog.users()
            except StreamrecError:
                users = []
        return {
            "users": users,
            "user_id": form.get("user_id", ""),
            "query": form.get("query", ""),
            "k": form.get("k", "10"),
            "result": result,
        }

    def _chat_context(self, form: dict[str, str], result: Any = None) -> dict[str, Any]:
        """The conversation panel: its id, the next turn, the transcript so far."""
        user_id = form.get("user_id", "").strip()[:200]
        conversation_id = form.get("conversation_id", "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", conversation_id):
            conversation_id = new_conversation_id()
        transcript: list[dict[str, Any]] = []
        if self.catalog is not None and user_id:
            try:
                rows = self.catalog.conversation(user_id, conversation_id)
                ids = [
                    i.item_id
                    for r in rows
                    for i in RecResponse.model_validate_json(r["response"]).items
                ]
                titles = self.catalog.titles(ids) if ids else {}
            except StreamrecError:
                rows, titles = [], {}
            for r in rows:
                transcript.append(
                    {
                        "turn": r["turn"],
                        "text": r["text"],
                        "response": RecResponse.model_validate_json(r["response"]),
                        "titles": titles,
                    }
                )
        turn = transcript[-1]["turn"] + 1 if transcript else 1
        return {
            "chat_user_id": user_id,
            "conversation_id": conversation_id,
            "next_turn": turn,
            "transcript": transcript,
            "chat_result": result,
        }

    def chat(self, form: dict[str, str]) -> tuple[int, bytes]:
        """Handle a conversation turn: send it, render the transcript and the reply."""
        user_id = form.get("user_id", "").strip()
        if not user_id or len(user_id) > 200:
            ctx = self._try_context(form) | self._chat_context(form)
            ctx["error"] = "give a user id (at most 200 characters)"
            return 400, self.render("tryit.html", nav="try", **ctx)
        ctx = self._chat_context(form)
        try:
            turn = max(1, min(1000, int(form.get("turn", "") or ctx["next_turn"])))
        except ValueError:
            turn = ctx["next_turn"]
        text = form.get("text", "").strip()[:2000]
        show_now = form.get("show_now") == "1"
        result = self.tryit.say(user_id, ctx["conversation_id"], turn, text, show_now)
        form = form | {"conversation_id": ctx["conversation_id"]}
        ctx = self._try_context({}, None) | self._chat_context(form, result)
        return 200, self.render("tryit.html", nav="try", **ctx)

    def try_it(self, form: dict[str, str]) -> tuple[int, bytes]:
        """Handle the try-it form: send the request, render the answer."""
        user_id = form.get("user_id", "").strip()
        if not user_id or len(user_id) > 200:
            ctx = self._try_context(form) | {"error": "give a user id (at most 200 characters)"}
            return 400, self.render("tryit.html", nav="try", **ctx)
        try:
            k = max(1, min(50, int(form.get("k", "10") or 10)))
        except ValueError:
            k = 10
        query = form.get("query", "").strip()[:2000] or None
        result = self.tryit.ask(user_id, query, k)
        return 200, self.render("tryit.html", nav="try", **self._try_context(form, result))


def _handler(board: Dashboard) -> type[BaseHTTPRequestHandler]:
    access = board.access

    class Handler(BaseHTTPRequestHandler):
        server_version = "streamrec-dashboard"

        def _send(
            self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", **extra: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (SECURITY_HEADERS | extra).items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self, query: dict[str, str]) -> str | None:
            verdict = access.check(dict(self.headers.items()), query)
            if verdict.ok:
                return verdict.set_cookie or ""
            extra = {"WWW-Authenticate": verdict.challenge} if verdict.challenge else {}
            self._send(401, b"authentication required\n", "text/plain; charset=utf-8", **extra)
            return None

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            cookie = self._authorised(query)
            if cookie is None:
                return
            extra = {"Set-Cookie": cookie} if cookie else {}
            path = parts.path.rstrip("/") or "/"
            if path == "/static/style.css":
                css = resources.files("dashboard").joinpath("static/style.css").read_bytes()
                self._send(200, css, "text/css; charset=utf-8", **extra)
                return
            try:
                status, body = board.page(path, query)
            except Exception as exc:
                log.exception("page %s failed", path)
                status, body = 500, board.render("error.html", nav="", message=str(exc))
            self._send(status, body, **extra)

        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            if self._authorised({}) is None:
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_FORM_BYTES:
                self._send(413, b"form too large\n", "text/plain; charset=utf-8")
                return
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            why = access.check_post(dict(self.headers.items()), form)
            if why is not None:
                log.warning("refused a POST to %s: %s", parts.path, why)
                self._send(403, f"refused: {why}\n".encode(), "text/plain; charset=utf-8")
                return
            target = parts.path.rstrip("/")
            if target not in ("/try", "/try/chat"):
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
                return
            try:
                status, body = board.chat(form) if target == "/try/chat" else board.try_it(form)
            except (StreamrecError, ConfigurationError) as exc:
                status, body = 503, board.render("error.html", nav="try", message=str(exc))
            self._send(status, body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.command, urlsplit(self.path).path)  # never the query

    return Handler
