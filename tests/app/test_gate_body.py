"""The front door's rules for request bodies (app/request_body.py), on the real Gate in this
process: a body that stops arriving, or trickles in, is cut off with a 408 whatever the app behind
made of it, while a complete body's answer may stream for as long as it takes (the app then waits
on receive() only to learn that the client went away). tests/api/test_local_first.py holds the
head and keep-alive deadlines on the real server."""

from __future__ import annotations

import json
import time

import anyio
import pytest

from app import request_body
from app.doors import Doors
from app.gate import Gate
from app.private_folder import PrivateFolder
from core.settings import Settings

SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"host", b"127.0.0.1")]}


def chunk(body: bytes, more: bool = True) -> dict:
    return {"type": "http.request", "body": body, "more_body": more}


def run_gate(client_messages: list[tuple[float | None, dict]], tmp_path, app_raises: bool = False):
    """-> (what an app behind the gate received as [(seconds after the start, message)], what the
    client was sent), when the client sends each message after its delay (None: never)."""
    received, sent, started = [], [], time.monotonic()
    pending = list(client_messages)

    async def client_receive():
        delay, message = pending.pop(0)
        await anyio.sleep(delay if delay is not None else 3600)
        return message

    async def app(scope, receive, send):
        while True:
            message = await receive()
            received.append((time.monotonic() - started, message))
            if message["type"] == "http.disconnect":
                if app_raises:  # what a framework does with a client that left mid-body
                    raise RuntimeError("the client disconnected")
                return await send({"type": "http.response.start", "status": 400, "headers": []})

    async def client_send(message):
        sent.append(message)

    async def main():
        gate = Gate(app, Settings(), Doors(PrivateFolder(str(tmp_path), 60), frozenset()))
        with anyio.fail_after(5):  # a gate that waits for ever fails here instead of hanging the suite
            await gate(SCOPE, client_receive, client_send)

    anyio.run(main)
    return received, sent


@pytest.fixture(autouse=True)
def quick_rules(monkeypatch):
    monkeypatch.setattr(request_body, "BODY_IDLE_S", 0.3)
    monkeypatch.setattr(request_body, "BODY_GRACE_S", 0.5)


def refusal(sent: list[dict]) -> tuple[int, str]:
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)["error"]["code"]


@pytest.mark.parametrize("app_raises", [False, True])
def test_a_stalled_body_is_cut_off_with_a_408(tmp_path, app_raises):
    received, sent = run_gate([(0, chunk(b"{")), (None, {})], tmp_path, app_raises)
    (_, first), (after, last) = received
    assert first["body"] == b"{" and last == {"type": "http.disconnect"}
    assert 0.25 < after < 2
    assert refusal(sent) == (408, "request_timeout")  # not the app's 400, nor a 500 from its error


def test_a_trickled_body_is_cut_off_after_its_grace(tmp_path):
    trickle = [(0.1, chunk(b"x")) for _ in range(40)]  # 10 bytes a second, never idle
    received, sent = run_gate(trickle, tmp_path)
    assert received[-1][1] == {"type": "http.disconnect"} and 0.5 < received[-1][0] < 1.5
    assert refusal(sent) == (408, "request_timeout")


def test_after_a_complete_body_receive_waits_for_the_client_however_long(tmp_path):
    received, _ = run_gate([(0, chunk(b"{}", more=False)), (1.0, {"type": "http.disconnect"})], tmp_path)
    assert [m["type"] for _, m in received] == ["http.request", "http.disconnect"]
    assert received[-1][0] >= 0.95  # the client's own disconnect, not the idle rule's
