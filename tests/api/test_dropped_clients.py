"""Clients that go away, or read slowly, against a real server: every slot comes back at once on
every path (batched, a lone request on the static cache, long-context), a non-streaming request
whose client left stops generating, and a slow reader keeps nobody else waiting."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tooling.server import running_server

pytestmark = pytest.mark.slow  # a server of its own, and 64 streams

STREAMS = 64


@pytest.fixture(scope="module")
def server(tiny_checkpoint, tmp_path_factory):
    # static decode: a lone request runs on the static cache, concurrent ones batched, long ones alone
    with running_server(tiny_checkpoint, tmp_path_factory.mktemp("dropped") / "serve.log", decode="static") as url:
        yield url


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def settles(url: str, seconds: float = 15) -> bool:
    """Whether the server reaches nothing in flight and nothing queued within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = health(url)
        if state["in_flight"] == 0 and state["queued"] == 0:
            return True
        time.sleep(0.1)
    return False


def body(max_tokens: int, stream: bool = True, text: str = "Tell me a long story.") -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "stream": stream}


def open_and_drop(url: str, max_tokens: int) -> int:
    """Opens a stream, reads until the first content event, then hangs up."""
    with (
        httpx.Client(timeout=60) as client,
        client.stream("POST", url + "/v1/chat/completions", json=body(max_tokens)) as response,
    ):
        if response.status_code == 200:
            for line in response.iter_lines():
                if '"content": "' in line and '"content": ""' not in line:
                    break
        return response.status_code


def answered(url: str) -> bool:
    response = httpx.post(url + "/v1/chat/completions", json=body(5, stream=False), timeout=60)
    return response.status_code == 200 and response.json()["choices"][0]["finish_reason"] == "length"


def test_64_dropped_streams_give_every_slot_back(server):
    with ThreadPoolExecutor(STREAMS) as pool:
        codes = list(pool.map(lambda _: open_and_drop(server, 2000), range(STREAMS)))
    assert codes.count(200) >= 16 and set(codes) <= {200, 429}
    assert settles(server), health(server)
    assert answered(server)


@pytest.mark.parametrize("max_tokens, path", [(300, "static"), (6000, "long-context")])
def test_a_dropped_stream_frees_its_slot_on_every_path(server, max_tokens, path):
    cancelled = health(server)["finished"].get("cancelled", 0)
    assert open_and_drop(server, max_tokens) == 200
    assert settles(server, 10)
    deadline = time.monotonic() + 10
    while health(server)["finished"].get("cancelled", 0) == cancelled and time.monotonic() < deadline:
        time.sleep(0.1)
    assert health(server)["finished"].get("cancelled", 0) > cancelled  # the engine stopped, too
    assert answered(server)


def test_a_non_streaming_request_stops_when_its_client_leaves(server):
    before = health(server)
    cancelled = before["finished"].get("cancelled", 0)
    payload = json.dumps(body(6000, stream=False)).encode()
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        deadline = time.monotonic() + 30
        while health(server)["tokens_generated"] == before["tokens_generated"]:  # until it is generating
            assert time.monotonic() < deadline, "the request never started generating"
            time.sleep(0.05)
    assert settles(server, 10)
    tokens = health(server)["tokens_generated"]
    assert health(server)["finished"].get("cancelled", 0) > cancelled
    time.sleep(0.5)
    assert health(server)["tokens_generated"] == tokens  # nothing generates for the departed client


def test_a_slow_reader_keeps_nobody_waiting(server):
    """A long-context stream read at one chunk every 0.3 s; a 5-token request finishes meanwhile."""
    reading, done = threading.Event(), threading.Event()

    def slow_reader():
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", server + "/v1/chat/completions", json=body(6000)) as response,
        ):
            for _ in response.iter_lines():
                reading.set()
                if done.is_set():
                    return
                time.sleep(0.3)

    thread = threading.Thread(target=slow_reader, daemon=True)
    thread.start()
    assert reading.wait(30)
    assert answered(server)
    assert thread.is_alive()  # the slow reader was still reading when the short request finished
    done.set()
    thread.join(30)
    assert settles(server)


def test_health_reports_the_decode_path_that_passed_its_self_check(server):
    state = health(server)
    assert state["decode"] == "static" and state["decode_fallback"] is None
