"""The server's front door, an ASGI middleware in front of every route (API, browser app, Gradio's
own routes), deciding from the request line and headers alone, before any body is read. In order:

- the Host and Origin (app/host_origin.py): no DNS rebinding, no other site's page (403);
- the key: when one is set, every route but `/health` (and `/metrics` if the operator opts out)
  needs `Authorization: Bearer <key>` or the cookie of a sign-in (app/sign_in.py: /login, /logout,
  expiring sessions, a limit on wrong keys: 401, 429). The key locks every door, not only /v1:
  the browser app and Gradio's routes run the model and take files too;
- the route (app/doors.py): an allowlist, files from the server's private folder alone (404);
- the size: a body over the upload cap is refused with 413 from its Content-Length; the body
  itself is then held to the cap and to a pace as it arrives (app/request_body.py: 413, 408).
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from urllib.parse import parse_qs

from app.api_errors import error_body
from app.doors import Doors
from app.host_origin import HostAndOrigin
from app.request_body import GuardedBody
from app.sign_in import LOGIN_PAGE, FailedAttempts, Sessions, client_of, cookie_token
from core.settings import Settings

log = logging.getLogger(__name__)
# Gradio's `launch()` (the Spaces entry point) calls startup-events on its own server, without the
# key, and fails to start unless it answers; it starts the queue once and says whether it did.
OPEN_PATHS = {"/health", "/gradio_api/startup-events"}
LOGIN_FORM_BYTES = 4096
ENVELOPE_BYTES = 64 * 1024  # multipart boundaries and form fields around an upload of the full cap


class Gate:
    def __init__(self, app, settings: Settings, doors: Doors, on_refused=lambda path, status: None):
        self.app = app
        self.on_refused = on_refused  # (path, status) of each request refused here, for /metrics
        self.key = settings.api_key or None
        self.sessions = Sessions(settings.login_hours)
        self.failures = FailedAttempts()
        self.host_origin = HostAndOrigin(settings)
        self.doors = doors
        self.open_paths = OPEN_PATHS | ({"/metrics"} if settings.metrics_public else set())
        self.max_body = settings.max_upload_mb * 2**20 + ENVELOPE_BYTES
        self.max_upload_mb = settings.max_upload_mb

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path, websocket = scope["path"], scope["type"] == "websocket"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if problem := self.host_origin.refusal(headers):
            return await self._refuse(scope, send, 403, problem, "permission_error", "forbidden")
        if self.key and path in ("/login", "/logout") and not websocket:
            return await (self._login if path == "/login" else self._logout)(scope, receive, send, headers)
        if self.key and path not in self.open_paths and not await self._signed(scope, send, headers):
            return
        if problem := self.doors.refusal(scope.get("method", "GET"), path):
            return await self._refuse(scope, send, 404, problem, "invalid_request_error", "not_found")
        if websocket:
            return await self.app(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            self.on_refused(path, 413)
            return await self._too_large(send)
        return await self._guarded(scope, receive, send)

    async def _signed(self, scope, send, headers: dict) -> bool:
        """Whether the request carries the key or a live sign-in; if not, it has been answered."""
        bearer = headers.get("authorization", "")
        token = cookie_token(headers.get("cookie", ""))
        client = client_of(scope)
        if bearer or token:
            if wait := self.failures.wait_s(client):  # too many wrong keys: this one is not even compared
                return await self._slow_down(scope, send, wait)
            if (bearer.startswith("Bearer ") and self._is_key(bearer[7:])) or (token and self.sessions.valid(token)):
                return True
            self.failures.failed(client)
        if scope["type"] == "http" and scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
            await _respond(send, 303, b"", [(b"location", b"/login")])
            return False
        message = "Missing or wrong API key: send `Authorization: Bearer <key>`, or sign in at /login in a browser."
        await self._refuse(scope, send, 401, message, "authentication_error", "invalid_api_key")
        return False

    def _is_key(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self.key.encode())

    async def _slow_down(self, scope, send, wait: float) -> bool:
        seconds = math.ceil(wait)
        message = f"Too many wrong keys from your address; try again in {seconds} s."
        headers = [(b"retry-after", str(seconds).encode())]
        await self._refuse(scope, send, 429, message, "rate_limit_error", "rate_limit_exceeded", headers)
        return False

    async def _refuse(self, scope, send, status, message, kind, code, headers=()):
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        self.on_refused(scope["path"], status)
        return await _error(send, status, message, kind, code, list(headers))

    async def _too_large(self, send):
        message = f"The request body is over {self.max_upload_mb} MB."
        return await _error(send, 413, message, "invalid_request_error", "request_too_large")

    async def _guarded(self, scope, receive, send):
        """The app, with the body held to its size and pace (app/request_body.py); a body cut off
        gets the refusal, whatever the app made of the client it saw leave."""
        body = GuardedBody(receive, send, self.max_body)
        try:
            await self.app(scope, body.receive, body.send)
        except Exception:  # noqa: BLE001 - the app's error about a client that (as far as it knows) left
            if not body.cut:
                raise
        if body.cut and not body.answering:
            self.on_refused(scope["path"], body.cut)
            if body.cut == 413:
                return await self._too_large(send)
            message = "The request body came too slowly, or stopped; send it again."
            await _error(send, 408, message, "invalid_request_error", "request_timeout", [(b"connection", b"close")])

    async def _login(self, scope, receive, send, headers: dict):
        if scope["method"] != "POST":
            return await _page(send, 200, LOGIN_PAGE.format(error=""))
        client = client_of(scope)
        if wait := self.failures.wait_s(client):
            await self._slow_down(scope, send, wait)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > LOGIN_FORM_BYTES:
                return await self._too_large(send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0]
        if not self._is_key(key):
            self.failures.failed(client)
            return await _page(send, 401, LOGIN_PAGE.format(error='<p class="error">That key is not right.</p>'))
        cookie = self.sessions.cookie(self.sessions.start())
        return await _respond(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])

    async def _logout(self, scope, receive, send, headers: dict):
        """Ends the sign-in on the server (its cookie no longer works, wherever it was copied)."""
        if token := cookie_token(headers.get("cookie", "")):
            self.sessions.end(token)
        cleared = self.sessions.cookie("", max_age=0).encode()
        return await _respond(send, 303, b"", [(b"location", b"/login"), (b"set-cookie", cleared)])


async def _respond(send, status: int, body: bytes, headers: list) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _page(send, status: int, page: str) -> None:
    await _respond(send, status, page.encode(), [(b"content-type", b"text/html; charset=utf-8")])


async def _error(send, status: int, message: str, kind: str, code: str, headers: list | None = None) -> None:
    """OpenAI's error body, which the API's clients parse and a person can read."""
    body = json.dumps(error_body(message, kind, code=code)).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json"), *(headers or [])])
