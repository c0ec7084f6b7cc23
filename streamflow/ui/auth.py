"""Authentication and request checks of the UI server (an ASGI middleware).

* Every route but ``/healthz`` needs the token: the ``sf_ui`` cookie (set by
  ``GET /?token=T``, which then redirects to ``/`` so the token leaves the address bar) or
  ``Authorization: Bearer T``. Tokens are compared with :func:`hmac.compare_digest`.
* State-changing requests are POST and need ``X-SF-CSRF`` equal to :meth:`Auth.csrf`
  (an HMAC of the token, never the token itself) and, when the browser sends an
  ``Origin``, the server's own origin.
* The ``Host`` header must name the address the server is bound to (a DNS-rebinding guard):
  a page of another site that resolves its name to 127.0.0.1 cannot read the API.
* Every response carries the security headers of :data:`SECURITY_HEADERS`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from streamflow.errors import ConfigError

__all__ = ["COOKIE", "CSRF_HEADER", "SECURITY_HEADERS", "Auth", "AuthMiddleware", "read_token_file"]

COOKIE = "sf_ui"
CSRF_HEADER = "x-sf-csrf"

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN_PAGE = b"""<!doctype html><html><head><meta charset="utf-8"><title>StreamFlow: token required</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;color:#222}
code{background:#f2f2f2;padding:0 .3em}</style></head><body><h1>Token required</h1>
<p>Open the address printed by <code>streamflow ui</code> (it ends with <code>?token=...</code>).</p>
</body></html>"""


def read_token_file(path: str) -> str:
    """The token stored in ``path`` (first line, stripped).

    Raises:
        ConfigError: the file is missing, readable by others (not 0600 or stricter) or empty.
    """
    try:
        info = os.stat(path)
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: {exc.strerror or exc}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--token-file {path}: readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                          f"make it 0600 (chmod 600 {path})")
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    if len(token) < 16:
        raise ConfigError(f"--token-file {path}: the token must be at least 16 characters")
    return token


@dataclass
class Auth:
    """The server's secret and what is derived from it.

    Attributes:
        token: the access token.
        hosts: the ``Host`` header values accepted (``127.0.0.1:8765``, ``localhost:8765``...).
        origins: the ``Origin`` values accepted for state-changing requests.
    """

    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    hosts: set[str] = field(default_factory=set)
    origins: set[str] = field(default_factory=set)
    secure_cookie: bool = False
    public_hosts: set[str] = field(default_factory=set)

    def public(self, url: str) -> None:
        """Also accept the address a reverse proxy serves the UI at (``--public-url``).

        Its ``Host`` (for a proxy that passes it on) and its origin become acceptable; an
        ``https`` address makes the cookie ``Secure``.

        Raises:
            ConfigError: ``url`` is not an absolute http(s) URL without a path.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"--public-url {url!r}: expected http(s)://HOST[:PORT], without path or credentials")
        default = 443 if parts.scheme == "https" else 80
        netloc = parts.hostname if parts.port in (None, default) else f"{parts.hostname}:{parts.port}"
        if ":" in (parts.hostname or "") and not netloc.startswith("["):  # an IPv6 literal
            netloc = f"[{parts.hostname}]" + ("" if parts.port in (None, default) else f":{parts.port}")
        self.public_hosts.add(netloc)
        self.hosts |= self.public_hosts if self.hosts else set()
        self.origins.add(f"{parts.scheme}://{netloc}")
        self.secure_cookie = self.secure_cookie or parts.scheme == "https"

    def bind(self, host: str, port: int) -> None:
        """Accept the ``Host``/``Origin`` of the address the server listens on (and of
        :meth:`public`, called before or after).

        A wildcard address (``0.0.0.0``, ``::``) accepts any ``Host`` (the machine's names
        are not known), and then an ``Origin`` must match the request's own ``Host``.
        """
        if host in ("0.0.0.0", "::", ""):
            return
        names = {host}
        if host in ("127.0.0.1", "localhost", "::1"):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        if ":" in host and not host.startswith("["):
            names.add(f"[{host}]")
        for name in names:
            if ":" in name and not name.startswith("["):
                continue
            self.hosts.add(f"{name}:{port}")
            self.origins.add(f"http://{name}:{port}")
        self.hosts |= self.public_hosts

    def csrf(self) -> str:
        """The CSRF value (an HMAC of the token: it reveals nothing of the token)."""
        return hmac.new(self.token.encode(), b"streamflow-ui-csrf", hashlib.sha256).hexdigest()

    def valid(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is the token (constant-time)."""
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _reply(send: Send, status: int, body: bytes, content_type: bytes,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(send: Send, status: int, message: str) -> None:
    await _reply(send, status, json.dumps({"error": message}).encode(), b"application/json")


class AuthMiddleware:
    """The checks of the module's docstring, around the application ``app``."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self._check(scope, receive, send_secured)

    async def _check(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        headers = _headers(scope)
        if self.auth.hosts and headers.get("host", "") not in self.auth.hosts:
            await _error(send, 400 if path.startswith("/api/") else 421, "unexpected Host header")
            return
        if path == "/healthz":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if path == "/" and method == "GET" and "token" in query:
            if not self.auth.valid(query["token"][0]):
                await _reply(send, 401, _TOKEN_PAGE, b"text/html; charset=utf-8")
                return
            cookie = f"{COOKIE}={self.auth.token}; HttpOnly; SameSite=Strict; Path=/"
            if self.auth.secure_cookie:
                cookie += "; Secure"
            await _reply(send, 303, b"", b"text/plain", [(b"location", b"/"), (b"set-cookie", cookie.encode())])
            return
        if not self._authenticated(headers):
            if path.startswith("/api/"):
                await _error(send, 401, "authentication required: open the URL printed by 'streamflow ui'")
            else:
                await _reply(send, 401, _TOKEN_PAGE, b"text/html; charset=utf-8")
            return
        if method not in ("GET", "HEAD"):
            if method != "POST":
                await _error(send, 405, f"method {method} not allowed")
                return
            origin = headers.get("origin")
            allowed = self.auth.origins or {f"http://{headers.get('host', '')}"}
            if origin is not None and origin not in allowed:
                await _error(send, 403, "cross-origin request refused")
                return
            csrf = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(csrf.encode(), self.auth.csrf().encode()):
                await _error(send, 403, "missing or wrong X-SF-CSRF header (GET /api/session gives it)")
                return
        await self.app(scope, receive, send)

    def _authenticated(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and self.auth.valid(bearer[7:].strip()):
            return True
        raw = headers.get("cookie")
        if not raw:
            return False
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(raw)
        except Exception:
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and self.auth.valid(morsel.value)
