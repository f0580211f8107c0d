"""Who may look: local by default, a token or basic auth elsewhere, no cross-site posts.

The dashboard shows user ids, queries and prompts, and its try-it panel sends requests.
Bound to a loopback address it serves anyone on the machine (as any local tool does);
bound to any other address it refuses to start unless an access token or a basic-auth
password is configured. Credentials are compared in constant time. A token given once
as ``?token=…`` sets an HttpOnly, SameSite=Strict session cookie that holds an HMAC of
the token, never the token itself. Every POST must come from the dashboard's own
origin (``Origin``/``Referer``) and carry the form's CSRF token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from recsys.exceptions import ConfigurationError
from streams.settings import Settings

__all__ = ["Access", "Verdict", "is_loopback"]

COOKIE = "streamrec_dashboard"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and a cookie to set when a token was just shown."""

    ok: bool
    set_cookie: str | None = None
    challenge: str | None = None


class Access:
    """Authentication and CSRF checks of one dashboard."""

    def __init__(self, settings: Settings, host: str) -> None:
        self.token = (
            settings.dashboard_token.get_secret_value() if settings.dashboard_token else None
        )
        self.user = settings.dashboard_user
        self.password = (
            settings.dashboard_password.get_secret_value() if settings.dashboard_password else None
        )
        if not is_loopback(host) and not (self.token or self.password):
            raise ConfigurationError(
                f"the dashboard would listen on {host}, beyond this machine, without "
                "credentials: set STREAMREC_DASHBOARD_TOKEN (or STREAMREC_DASHBOARD_PASSWORD), "
                "or bind it to 127.0.0.1"
            )
        self._secret = secrets.token_bytes(32)
        self.csrf_token = hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()

    @property
    def open(self) -> bool:
        """No credentials configured (only possible on a loopback bind)."""
        return not (self.token or self.password)

    def _session(self) -> str:
        assert self.token is not None
        return hmac.new(self.token.encode(), b"dashboard-session", hashlib.sha256).hexdigest()

    def check(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Verdict:
        """May this request see the dashboard?"""
        if self.open:
            return Verdict(True)
        auth = headers.get("Authorization", "")
        if self.token:
            if auth.startswith("Bearer ") and _same(auth[7:].strip(), self.token):
                return Verdict(True)
            cookie = SimpleCookie(headers.get("Cookie", ""))
            if COOKIE in cookie and _same(cookie[COOKIE].value, self._session()):
                return Verdict(True)
            given = query.get("token")
            if given is not None and _same(given, self.token):
                return Verdict(
                    True,
                    set_cookie=f"{COOKIE}={self._session()}; HttpOnly; SameSite=Strict; Path=/",
                )
        if self.password and auth.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            if _same(user, self.user) & _same(password, self.password):
                return Verdict(True)
        challenge = 'Basic realm="streamrec dashboard"' if self.password else None
        return Verdict(False, challenge=challenge)

    def check_post(self, headers: Mapping[str, str], form: Mapping[str, str]) -> str | None:
        """None when a POST is same-origin and carries the CSRF token, else why not."""
        host = headers.get("Host", "")
        origin = headers.get("Origin") or headers.get("Referer")
        if not origin:
            return "no Origin or Referer header"
        if urlsplit(origin).netloc != host:
            return f"cross-site request from {urlsplit(origin).netloc or origin!r}"
        if not _same(form.get("csrf", ""), self.csrf_token):
            return "missing or wrong CSRF token"
        return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
