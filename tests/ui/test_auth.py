"""The UI's access checks behind a reverse proxy (``--public-url``), in process.

The middleware wraps a trivial ASGI app; httpx talks to it through its ASGI transport, so
these tests need no server. The end-to-end checks of the real ``streamflow ui`` process are
in ``test_api.py``.
"""

from __future__ import annotations

import pytest
from httpx import ASGITransport, AsyncClient
from starlette.types import Receive, Scope, Send

from streamflow.errors import ConfigError
from streamflow.ui.auth import COOKIE, CSRF_HEADER, Auth, AuthMiddleware


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _client(auth: Auth, base: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=AuthMiddleware(_ok, auth)), base_url=base)


async def test_a_public_https_url_is_accepted_and_makes_the_cookie_secure() -> None:
    auth = Auth()
    auth.public("https://flows.example.org")
    auth.bind("127.0.0.1", 8765)
    async with _client(auth, "https://flows.example.org") as client:
        login = await client.get(f"/?token={auth.token}")
        assert login.status_code == 303
        cookie = login.headers["set-cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        headers = {"cookie": f"{COOKIE}={auth.token}", CSRF_HEADER: auth.csrf()}
        proxied = await client.post("/api/runs/r1/cancel", headers={**headers, "origin": "https://flows.example.org"})
        assert proxied.status_code == 200
        foreign = await client.post("/api/runs/r1/cancel", headers={**headers, "origin": "https://evil.example"})
        assert foreign.status_code == 403
    # The loopback address still works, through an SSH tunnel say.
    async with _client(auth, "http://127.0.0.1:8765") as client:
        direct = await client.post("/api/runs/r1/cancel", headers={
            "cookie": f"{COOKIE}={auth.token}", CSRF_HEADER: auth.csrf(), "origin": "http://127.0.0.1:8765"})
        assert direct.status_code == 200
        other_host = await client.get("/api/runs", headers={"host": "attacker.example:8765",
                                                            "authorization": f"Bearer {auth.token}"})
        assert other_host.status_code == 400


async def test_without_a_public_url_the_cookie_is_not_secure_and_a_proxy_origin_is_refused() -> None:
    auth = Auth()
    auth.bind("127.0.0.1", 8765)
    async with _client(auth, "http://127.0.0.1:8765") as client:
        login = await client.get(f"/?token={auth.token}")
        assert login.status_code == 303 and "Secure" not in login.headers["set-cookie"]
        refused = await client.post("/api/runs/r1/cancel", headers={
            "cookie": f"{COOKIE}={auth.token}", CSRF_HEADER: auth.csrf(), "origin": "https://flows.example.org"})
        assert refused.status_code == 403


@pytest.mark.parametrize("url", ["flows.example.org", "ftp://flows.example.org", "https://flows.example.org/ui",
                                 "https://user:pw@flows.example.org", "https://"])
def test_a_public_url_that_is_not_an_origin_is_refused_naming_it(url: str) -> None:
    with pytest.raises(ConfigError, match="--public-url"):
        Auth().public(url)


def test_a_public_url_with_a_port_keeps_it() -> None:
    auth = Auth()
    auth.bind("127.0.0.1", 9000)
    auth.public("https://Flows.Example.org:8443/")
    assert "https://flows.example.org:8443" in auth.origins
    assert "flows.example.org:8443" in auth.hosts
