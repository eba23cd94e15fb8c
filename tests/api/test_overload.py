"""Overload: a bounded burst against a server that runs one generation and queues one more.
Some requests get 429 with Retry-After; every other request completes; the server keeps serving."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tooling.server import running_server

pytestmark = pytest.mark.slow  # a server of its own

BURST = 10


@pytest.fixture(scope="module")
def small_server(tiny_checkpoint, tmp_path_factory):
    with running_server(
        tiny_checkpoint, tmp_path_factory.mktemp("overload") / "serve.log", max_inflight="1", queue_size="1"
    ) as url:
        yield url


def one_request(url: str, stream: bool) -> tuple[int, str | None, bool]:
    """(status, Retry-After, completed): a stream completes with [DONE], an answer with choices."""
    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 400, "stream": stream}
    with httpx.Client(timeout=60) as client, client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        text = response.read().decode()
    if response.status_code != 200:
        assert set(json.loads(text)["error"]) == {"message", "type", "param", "code"}
        return response.status_code, response.headers.get("retry-after"), False
    completed = text.rstrip().endswith("data: [DONE]") if stream else bool(json.loads(text)["choices"])
    return 200, None, completed


def test_burst_gets_429s_and_everything_else_completes(small_server):
    with ThreadPoolExecutor(BURST) as pool:
        results = list(pool.map(lambda i: one_request(small_server, stream=i % 2 == 0), range(BURST)))
    refused = [r for r in results if r[0] == 429]
    served = [r for r in results if r[0] != 429]
    assert refused, "a burst of 10 against 1 slot + 1 queue place must be refused in part"
    assert all(retry_after and int(retry_after) >= 1 for _, retry_after, _ in refused)
    assert served and all(status == 200 and completed for status, _, completed in served)
    assert one_request(small_server, stream=True) == (200, None, True)  # still serving, places given back


def test_media_is_decoded_only_after_admission(small_server):
    """With every slot and queue place taken, a request with media is refused before its media is
    decoded (so the slots bound decoding memory too): a corrupt image gets 429, not a decode error."""
    import threading

    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 3000, "stream": True}
    opened, release = threading.Barrier(3), threading.Event()

    def hold_a_place():
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", small_server + "/v1/chat/completions", json=body) as response,
        ):
            opened.wait(30)
            release.wait(30)
            assert response.status_code == 200

    holders = [threading.Thread(target=hold_a_place) for _ in range(2)]
    for holder in holders:
        holder.start()
    opened.wait(30)
    corrupt = {
        "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
        ]
    }
    response = httpx.post(small_server + "/v1/chat/completions", json=corrupt, timeout=30)
    release.set()
    for holder in holders:
        holder.join(30)
    assert response.status_code == 429
