"""A request body held to the server's limits as it arrives, for requests whose headers passed the
front door (app/gate.py):

- size: past the cap (a chunked body has no Content-Length to refuse it by) -> 413;
- pace: a body that sends nothing for BODY_IDLE_S, or that after BODY_GRACE_S still averages under
  BODY_MIN_RATE bytes a second (one byte every few seconds holds a connection for ever) -> 408.

Either way the app behind sees the client go away, whatever it then answers or raises is dropped,
and the client gets the refusal instead, when nothing of an answer has gone out yet. Once the body
is complete no rule applies: receive() then only waits for the client to leave, for as long as an
answer streams.
"""

from __future__ import annotations

import logging
import time

import anyio

log = logging.getLogger(__name__)
BODY_IDLE_S = 60  # no byte of the body for this long: the client has gone (or is an attack)
BODY_GRACE_S = 60  # a body slower than BODY_MIN_RATE is cut off only after this
BODY_MIN_RATE = 1024  # bytes a second, on average: 57 hours for a 200 MB upload
DISCONNECT = {"type": "http.disconnect"}


class GuardedBody:
    def __init__(self, receive, send, max_bytes: int):
        self._receive, self._send, self.max_bytes = receive, send, max_bytes
        self.seen, self.done, self.started_at = 0, False, time.monotonic()
        self.cut: int | None = None  # the status the body was cut off with (413, 408), if it was
        self.answering = False  # the app's answer has begun

    async def receive(self) -> dict:
        if self.cut:
            return DISCONNECT
        if self.done:
            return await self._receive()
        with anyio.move_on_after(BODY_IDLE_S) as idle:
            message = await self._receive()
        if idle.cancelled_caught:
            return self._cut_off(408, f"a request body sent nothing for {BODY_IDLE_S} s")
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            self.done = not message.get("more_body", False)
            elapsed = time.monotonic() - self.started_at
            if self.seen > self.max_bytes:
                return self._cut_off(413, "a request body went past the cap")
            if not self.done and elapsed > BODY_GRACE_S and self.seen < elapsed * BODY_MIN_RATE:
                return self._cut_off(408, f"a request body came at {self.seen / elapsed:.0f} bytes/s")
        return message

    async def send(self, message: dict) -> None:
        if not self.cut:
            self.answering = self.answering or message["type"] == "http.response.start"
            await self._send(message)

    def _cut_off(self, status: int, why: str) -> dict:
        log.info("%s: cut off (%d)", why, status)
        self.cut = status
        return DISCONNECT
