"""The front door's pace rule for request bodies, on the real Gate in this process: a body that
stops arriving reads as a client that left, while a complete body's answer may stream for as long
as it takes (the app then waits on receive() only to learn that the client went away)."""

from __future__ import annotations

import time

import anyio
import pytest

from app import gate as gate_module
from app.doors import Doors
from app.gate import Gate
from app.private_folder import PrivateFolder
from core.settings import Settings

SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [(b"host", b"127.0.0.1")]}


def run_gate(client_messages: list[tuple[float, dict]], tmp_path) -> list[tuple[float, dict]]:
    """What an app behind the gate receives -> [(seconds after the start, message)], when the client
    sends each message after its delay (a delay of None: never)."""
    received, started = [], time.monotonic()
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
                return

    async def send(message):
        pass

    async def main():
        with anyio.fail_after(5):  # a gate that waits for ever fails here instead of hanging the suite
            await Gate(app, Settings(), Doors(PrivateFolder(str(tmp_path), 60), frozenset()))(
                SCOPE, client_receive, send
            )

    anyio.run(main)
    return received


@pytest.fixture(autouse=True)
def quick_idle(monkeypatch):
    monkeypatch.setattr(gate_module, "BODY_IDLE_S", 0.3)


def test_a_stalled_body_reads_as_a_client_that_left(tmp_path):
    received = run_gate([(0, {"type": "http.request", "body": b"{", "more_body": True}), (None, {})], tmp_path)
    (_, first), (after, last) = received
    assert first["body"] == b"{" and last == {"type": "http.disconnect"}
    assert 0.25 < after < 2


def test_after_a_complete_body_receive_waits_for_the_client_however_long(tmp_path):
    body = {"type": "http.request", "body": b"{}", "more_body": False}
    received = run_gate([(0, body), (1.0, {"type": "http.disconnect"})], tmp_path)
    assert [m["type"] for _, m in received] == ["http.request", "http.disconnect"]
    assert received[-1][0] >= 0.95  # the client's own disconnect, not the idle rule's
