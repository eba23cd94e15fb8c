"""A stream that has started cannot turn into an error status: whatever fails after its first
event ends it with an OpenAI error event and `[DONE]` (app/sse_stream.py `sse_events`), through
the real conversation service and tiny engine. A refusal comes before the stream: on the call."""

from __future__ import annotations

import json

import pytest

from app.chat_request import ChatPlan
from app.chat_schema import ChatCompletionChunk
from app.service import ConversationService
from app.sse_stream import sse_events
from core.errors import InvalidRequest, ShuttingDown
from engine.request import SamplingParams
from media.parts import Message, TextPart


@pytest.fixture(scope="module")
def service(engine):
    return ConversationService(engine)


def events(replies) -> list:
    template = ChatCompletionChunk(id="chatcmpl-test", created=0, model="tiny", choices=[])
    lines = list(sse_events(replies, ChatPlan([SamplingParams()], None, None, None), template, True))
    assert lines[-1] == "data: [DONE]\n\n"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def hi(service, **params):
    return service.chat([Message("user", [TextPart("hi")])], SamplingParams(**params))


def test_a_refusal_comes_on_the_call_before_any_event(service):
    with pytest.raises(InvalidRequest, match="max_new_tokens"):
        hi(service, max_new_tokens=0)


def failing_after(replies, err: Exception):
    """The service's replies, then `err` (as when the server stops mid-answer)."""
    yield next(replies)
    replies.close()
    raise err


def test_a_failure_after_the_first_event_ends_with_an_error_event(service):
    sent = events(failing_after(hi(service, max_new_tokens=50), ShuttingDown()))
    assert sent[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sent[-1]["error"]["type"] == "server_error" and "shutting down" in sent[-1]["error"]["message"].lower()


def test_an_unexpected_failure_ends_with_a_server_error_event(service, caplog):
    sent = events(failing_after(hi(service, max_new_tokens=50), TypeError("a bug")))
    assert sent[-1]["error"] == {
        "message": "Generating this answer failed on the server.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert "failed while streaming" in caplog.text


def test_a_whole_stream_has_one_finish_then_its_usage(service):
    sent = events(hi(service, max_new_tokens=3))
    answer, last = sent[:-1], sent[-1]
    finishes = [e["choices"][0]["finish_reason"] for e in answer]
    assert finishes[:-1] == [None] * (len(answer) - 1) and finishes[-1] in ("stop", "length")
    assert not any("usage" in e for e in answer)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] >= 1  # include_usage: a chunk of its own
