"""The server's front door, an ASGI middleware in front of every route (API, browser app, Gradio's
own routes), deciding from the request line and headers alone, before any body is read:

- the key: when `--api-key` is set, every route but `/health` (and `/metrics` if the operator
  opts out) needs `Authorization: Bearer <key>` or the session cookie that `/login` sets for a
  browser. The key locks every door, not only /v1: the browser app and Gradio's /call and upload
  routes run the model and take files too.
- the size: a body over the upload cap is refused with 413 from its Content-Length, and a body
  without one is counted as it arrives and cut off at the cap.
- Gradio's internal events (the ChatInterface's undo/retry helpers and the like) are callable
  only from the page, never by name through `/gradio_api/call/<name>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs

from app.api_errors import error_body
from core.settings import Settings

COOKIE = "phi4mm_session"
OPEN_PATHS = {"/health", "/login"}
LOGIN_FORM_BYTES = 4096
ENVELOPE_BYTES = 64 * 1024  # multipart boundaries and form fields around an upload of the full cap
LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Phi-4-multimodal: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:26em;margin:12vh auto;padding:0 1em}}
input,button{{font-size:1em;padding:.5em;width:100%;box-sizing:border-box;margin:.3em 0}}
.error{{color:#b00020}}</style></head><body><h1>Sign in</h1>
<p>This server needs its access key (the one it was started with: <code>--api-key</code>).</p>
{error}<form method="post" action="/login"><input type="password" name="key" placeholder="Access key"
autocomplete="current-password" autofocus required><button type="submit">Open the app</button></form></body></html>"""


def session_token(key: str) -> str:
    """The cookie's value: derived from the key, so the key itself never sits in a browser."""
    return hmac.new(key.encode(), b"phi4mm browser session", hashlib.sha256).hexdigest()


class Gate:
    def __init__(self, app, settings: Settings, public_calls: set[str], on_refused=lambda path, status: None):
        self.app = app
        self.on_refused = on_refused  # (path, status) of each request refused here, for /metrics
        self.key = settings.api_key or None
        self.token = session_token(self.key) if self.key else None
        self.open_paths = OPEN_PATHS | ({"/metrics"} if settings.metrics_public else set())
        self.max_body = settings.max_upload_mb * 2**20 + ENVELOPE_BYTES
        self.max_upload_mb = settings.max_upload_mb
        self.public_calls = public_calls

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.key and path == "/login" and scope["type"] == "http":
            return await self._login(scope, receive, send)
        if self.key and path not in self.open_paths and not self._authorised(headers):
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            if scope["method"] == "GET" and "text/html" in headers.get("accept", ""):
                return await _respond(send, 303, b"", [(b"location", b"/login")])
            self.on_refused(path, 401)
            return await _error(
                send,
                401,
                "Missing or wrong API key: send `Authorization: Bearer <key>`, or sign in at /login in a browser.",
                "authentication_error",
                "invalid_api_key",
            )
        if (name := _called_by_name(path)) and name not in self.public_calls:
            return await _error(send, 404, "No such endpoint.", "invalid_request_error", "not_found")
        if scope["type"] == "websocket":
            return await self.app(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            self.on_refused(path, 413)
            return await self._too_large(send)
        return await self._counted(scope, receive, send)

    def _authorised(self, headers: dict) -> bool:
        bearer = headers.get("authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(bearer[7:].encode(), self.key.encode()):
            return True
        cookies = [c.strip().split("=", 1) for c in headers.get("cookie", "").split(";") if "=" in c]
        return any(
            name == COOKIE and hmac.compare_digest(value.encode(), self.token.encode()) for name, value in cookies
        )

    async def _too_large(self, send):
        return await _error(
            send,
            413,
            f"The request body is over {self.max_upload_mb} MB.",
            "invalid_request_error",
            "request_too_large",
        )

    async def _counted(self, scope, receive, send):
        """A body without a Content-Length (chunked) is counted as it arrives: past the cap the app
        sees the client go away, and whatever it answers is replaced by a 413."""
        seen, over, started = 0, False, False

        async def counted_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            nonlocal started
            if over and not started:
                started = True
                return await self._too_large(send)
            if not over:
                started = started or message["type"] == "http.response.start"
                await send(message)

        await self.app(scope, counted_receive, guarded_send)
        if over and not started:
            await self._too_large(send)

    async def _login(self, scope, receive, send):
        if scope["method"] != "POST":
            return await _page(send, 200, LOGIN_PAGE.format(error=""))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > LOGIN_FORM_BYTES:
                return await self._too_large(send)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        key = (parse_qs(body.decode("utf-8", "replace")).get("key") or [""])[0]
        if not hmac.compare_digest(key.encode(), self.key.encode()):
            error = '<p class="error">That key is not right.</p>'
            return await _page(send, 401, LOGIN_PAGE.format(error=error))
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        return await _respond(send, 303, b"", [(b"location", b"/"), (b"set-cookie", cookie.encode())])


def _called_by_name(path: str) -> str | None:
    """`/gradio_api/call/<name>[/...]` -> name (Gradio's run-by-name routes)."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "gradio_api" and parts[1] == "call":
        return parts[3] if parts[2] == "v2" and len(parts) > 3 else parts[2]
    return None


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


async def _error(send, status: int, message: str, kind: str, code: str) -> None:
    """OpenAI's error body, which the API's clients parse and a person can read."""
    body = json.dumps(error_body(message, kind, code=code)).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json")])
