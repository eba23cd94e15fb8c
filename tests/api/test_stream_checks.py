"""Streams against real servers: every refusal comes before the 200, with the same status and body
as the same request unstreamed, on the local engine and through the `openai` backend (a second
server whose remote is the first); streams hold no worker thread (48 of them through a server
allowed 8, `/health` answering meanwhile); a client that leaves frees its place at once."""

from __future__ import annotations

import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.api.test_openai_client import IMAGE
from tooling.inputs import encode_audio, make_tone
from tooling.server import idle_activity, running_server, server_process

pytestmark = pytest.mark.slow  # two servers of its own (about 10 s each to start)

STREAMS = 48
# The local server's limits, small enough for the tiny model's prompts to cross: a "hi" renders
# to about 130 tokens with the system prompt, a half-second clip with the ASR prompt to about 450, and the
# example photo to about 900 media tokens.
LIMITS = {"context_window": "520", "max_media_tokens": "300"}
HI = [{"role": "user", "content": "hi"}]
BAD_PNG = "data:image/png;base64,AAAA"
REFUSALS = {
    "prompt too long": {"messages": [{"role": "user", "content": "hello " * 600}]},
    "too many media tokens": {"messages": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "?"}]}]},
    "input guard": {"messages": [{"role": "user", "content": "x" * 40_000}]},
    "no finite grammar": {
        "messages": HI,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "endless",
                "schema": {"type": "object", "properties": {"n": {"$ref": "#"}}, "required": ["n"]},
            },
        },
    },
    "bad image": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": BAD_PNG}}]}]},
}


@pytest.fixture(scope="module")
def local_process(tiny_checkpoint, tmp_path_factory):
    # worker_threads 8: anyio's default limiter set to 8; every stream may run at once
    with server_process(
        tiny_checkpoint,
        tmp_path_factory.mktemp("checks") / "serve.log",
        worker_threads="8",
        max_inflight=str(STREAMS),
        **LIMITS,
    ) as (url, process):
        yield url, process


@pytest.fixture(scope="module")
def local(local_process):
    return local_process[0]


def threads(process) -> int:
    return len(os.listdir(f"/proc/{process.pid}/task"))


@pytest.fixture(scope="module")
def front(local, tiny_checkpoint, tmp_path_factory):
    with running_server(
        tiny_checkpoint, tmp_path_factory.mktemp("front") / "serve.log", backend="openai", base_url=local + "/v1"
    ) as url:
        yield url


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


def post(url: str, body: dict, stream: bool, route: str = "/v1/chat/completions") -> tuple[int, bytes]:
    """(status, the whole body as sent) of one request, read as a raw stream either way."""
    cap = {"max_tokens": 4} if route == "/v1/chat/completions" else {"max_output_tokens": 4}
    body = {"model": "phi4mm", **cap, **body, "stream": stream}
    with httpx.stream("POST", url + route, json=body, timeout=120) as response:
        return response.status_code, response.read()


def as_response(chat: dict) -> dict:
    """A refused chat body as the same Responses API request (input items, text.format)."""
    body = {"input": [{"role": "user", "content": parts(m["content"])} for m in chat["messages"]]}
    if fmt := chat.get("response_format"):
        body["text"] = {"format": {"type": "json_schema", "name": "endless", "schema": fmt["json_schema"]["schema"]}}
    return body


def parts(content):
    if isinstance(content, str):
        return content
    return [
        {"type": "input_image", "image_url": p["image_url"]["url"]}
        if p["type"] == "image_url"
        else {"type": "input_text", "text": p["text"]}
        for p in content
    ]


@pytest.mark.parametrize("server", ["local", "front"])
@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refused_stream_gets_the_status_and_body_of_the_refused_request(request, server, kind):
    url = request.getfixturevalue(server)
    status, body = post(url, REFUSALS[kind], stream=False)
    assert 400 <= status < 500, body
    assert post(url, REFUSALS[kind], stream=True) == (status, body)  # was 200 and an error event
    assert json.loads(body)["error"]["message"]


@pytest.mark.parametrize("kind", REFUSALS)
def test_a_refused_responses_stream_gets_the_status_and_body_of_the_refused_request(local, kind):
    body = as_response(REFUSALS[kind])
    status, whole = post(local, body, stream=False, route="/v1/responses")
    assert 400 <= status < 500, whole
    streamed = post(local, body, stream=True, route="/v1/responses")
    assert streamed == (status, whole)  # was 200 and an error event
    assert json.loads(whole)["error"]["message"]


def test_the_official_client_sees_a_refused_stream_as_an_error_status(local):
    client = openai.OpenAI(base_url=local + "/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="phi4mm", stream=True, **REFUSALS["prompt too long"])
    assert refused.value.status_code == 400 and "context window" in refused.value.message


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_48_streams_through_8_worker_threads_all_finish_and_health_answers(local_process):
    local, process = local_process
    client = openai.OpenAI(base_url=local + "/v1", api_key="unused", max_retries=0, timeout=300)
    before = threads(process)

    def one(i: int) -> str | None:
        chunks = client.chat.completions.create(
            model="phi4mm", messages=[{"role": "user", "content": f"Story {i}"}], max_tokens=24, stream=True
        )
        return [c.choices[0].finish_reason for c in chunks if c.choices][-1]

    with ThreadPoolExecutor(STREAMS) as pool:
        results = [pool.submit(one, i) for i in range(STREAMS)]
        most = extra = 0  # streams in flight at once, as /health tells while they run; threads added
        while not all(r.done() for r in results):
            most = max(most, health(local)["in_flight"])
            extra = max(extra, threads(process) - before)
            time.sleep(0.1)
        reasons = [r.result() for r in results]
    assert most > 8  # more streams than worker threads, and /health answered meanwhile
    assert extra < STREAMS // 2, extra  # no thread per stream (the batcher's and the 8 workers at most)
    assert set(reasons) <= {"stop", "length"} and len(reasons) == STREAMS


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts wake-ups in /proc")
def test_the_server_rests_once_the_streams_are_done(local_process):
    """Nothing left polling at millisecond rates: Gradio's queue looks for work every millisecond
    unless app/server.py says otherwise, which woke the idle event loop 730-880 times a second (8 %
    of a core) and took the GIL from the decode thread; ~60 with its setting (the queue, its
    progress check, uvicorn) and 1.5 %."""
    local, process = local_process
    deadline = time.monotonic() + 60
    while (now := health(local))["in_flight"] or now["queued"]:  # the streams of the tests before
        assert time.monotonic() < deadline, now
        time.sleep(0.2)
    wakes, busy = idle_activity(process.pid)
    assert wakes < 150 and busy < 0.05, (wakes, busy)


SHORT_WAV = encode_audio(make_tone(0.5), 16000, "wav")  # its prompt fits the context window (LIMITS)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_streamed_transcripts_hold_no_thread_either(local_process):
    """Each transcript's segment is prepared in a worker thread borrowed for that alone; its tokens
    come without one (24 streams through 8 workers; each held a thread of its own before)."""
    local, process = local_process
    client = openai.OpenAI(base_url=local + "/v1", api_key="unused", max_retries=0, timeout=300)
    before, streams = threads(process), STREAMS // 2

    def one(i: int) -> str:
        events = list(client.audio.transcriptions.create(model="phi4mm", file=("tone.wav", SHORT_WAV), stream=True))
        return events[-1].type

    with ThreadPoolExecutor(streams) as pool:
        results = [pool.submit(one, i) for i in range(streams)]
        extra = 0
        while not all(r.done() for r in results):
            extra = max(extra, threads(process) - before)
            time.sleep(0.05)
        kinds = [r.result() for r in results]
    assert kinds == ["transcript.text.done"] * streams
    # the 8 workers (the uploads decode there too) and anyio's idle ones lingering: 20 at most seen
    # under load; a thread per stream came to 60
    assert extra < streams, extra


LEAVING = {  # route: (body, a line of the answer's first text)
    "/v1/chat/completions": ({"messages": HI, "max_tokens": 1500}, re.compile(r'"content": "[^"]')),
    "/v1/responses": ({"input": HI, "max_output_tokens": 1500}, re.compile(r'"delta": "[^"]')),
}


@pytest.mark.parametrize("route", LEAVING)
def test_a_client_that_leaves_frees_its_place_and_its_row_at_once(local, route):
    before = health(local)
    cancelled = before["finished"].get("cancelled", 0)
    body, text = LEAVING[route]
    body = {"model": "phi4mm", **body, "stream": True}
    with httpx.Client(timeout=60) as client, client.stream("POST", local + route, json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if text.search(line):
                break  # then hang up
    deadline = time.monotonic() + 30
    while (state := health(local))["in_flight"] or state["finished"].get("cancelled", 0) == cancelled:
        assert time.monotonic() < deadline, state
        time.sleep(0.05)
    assert state["tokens_generated"] - before["tokens_generated"] < 1500  # it stopped long before the end
