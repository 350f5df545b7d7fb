"""The dashboard's guard: security headers on every response, the token on every request.

Pure ASGI middleware (no buffering, so it costs nothing on big responses):

- every response carries a strict Content-Security-Policy (``default-src 'self'``, no inline
  script or style, ``frame-ancestors 'none'``), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer`` and ``X-Frame-Options: DENY``;
- a ``Host`` header naming anything but the allowed hosts gets 421: a web page on
  another origin cannot reach the dashboard through DNS rebinding;
- with a token, every request needs it: ``Authorization: Bearer <token>``, or the
  session cookie set after visiting any page with ``?token=<token>`` (that visit
  redirects to the same URL without the token, so it leaves no trace in the address
  bar). Comparisons are constant-time; the cookie holds an HMAC of the token, never
  the token itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "CSP", "REPORT_CSP", "Guard"]

COOKIE = "cairn_dashboard"
"""Name of the session cookie set after a ``?token=`` login."""

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The policy of every dashboard page and API response."""

REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; sandbox"
)
"""Lab reports are static HTML with inline styles: no script runs, in a sandboxed origin."""

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _session(token: str) -> str:
    return hmac.new(token.encode(), b"cairn-dashboard-session", hashlib.sha256).hexdigest()


def _host_only(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI middleware adding the security headers and, with ``token``, requiring it.

    ``hosts`` are the names the ``Host`` header may carry (loopback names always
    may); ``None`` accepts any host (for a dashboard bound to a public address).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None = None,
        hosts: Iterable[str] | None = (),
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string, or None for no token")
        self.app = app
        self.token = token
        self.hosts = None if hosts is None else _LOOPBACK | {h.lower() for h in hosts}
        self._session = _session(token) if token else ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for name, value in self._extra(scope):
                    if name.encode() not in present:
                        raw.append((name.encode(), value.encode()))
                message = {**message, "headers": raw}
            await send(message)

        if self.hosts is not None and _host_only(headers.get("host", "")).lower() not in self.hosts:
            await _plain(secured, 421, "unknown Host header; open the dashboard by 127.0.0.1")
            return
        if self.token is None:
            await self.app(scope, receive, secured)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), None)
        if given is not None:
            await self._login(scope, secured, given, query)
            return
        if self._authorized(headers):
            await self.app(scope, receive, secured)
            return
        await _plain(
            secured,
            401,
            "this dashboard needs its token: open it with ?token=<token> "
            "or send 'Authorization: Bearer <token>'",
            [("www-authenticate", 'Bearer realm="cairn dashboard"')],
        )

    def _extra(self, scope: Scope) -> list[tuple[str, str]]:
        path: str = scope.get("path", "")
        csp = REPORT_CSP if path.startswith("/lab/files/") else CSP
        extra = [
            ("content-security-policy", csp),
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
        ]
        if path.startswith("/api/"):
            extra.append(("cache-control", "no-store"))
        return extra

    def _authorized(self, headers: dict[str, str]) -> bool:
        assert self.token is not None
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            return hmac.compare_digest(bearer[7:].strip().encode(), self.token.encode())
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is simply no session
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and hmac.compare_digest(
            morsel.value.encode(), self._session.encode()
        )

    async def _login(
        self, scope: Scope, send: Send, given: str, query: list[tuple[str, str]]
    ) -> None:
        assert self.token is not None
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            await _plain(send, 401, "wrong token")
            return
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        # One leading slash only: "//host" would send the browser to another site.
        path = "/" + quote(scope["path"]).lstrip("/")
        location = path + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict"
        await _plain(send, 303, "logged in", [("location", location), ("set-cookie", cookie)])


async def _plain(
    send: Send, status: int, text: str, headers: list[tuple[str, str]] | None = None
) -> None:
    body = (text + "\n").encode()
    raw: list[Any] = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw.extend((k.encode(), v.encode()) for k, v in headers or ())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
