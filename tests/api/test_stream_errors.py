"""A stream that has started cannot turn into an error status: whatever fails after its first
event ends it with an OpenAI error event and `[DONE]` (app/api.py `_sse`), through the real
conversation service and tiny engine."""

from __future__ import annotations

import json
import threading

import pytest

from app.api import _sse
from app.chat_request import ChatPlan
from app.protocol import ChatCompletionChunk
from app.service import ConversationService
from engine.request import SamplingParams
from media.parts import Message, TextPart


@pytest.fixture(scope="module")
def service(engine):
    return ConversationService(engine)


def events(service, messages, params) -> list:
    template = ChatCompletionChunk(id="chatcmpl-test", created=0, model="tiny", choices=[])
    lines = list(_sse(service, messages, ChatPlan([params], None, None, None), template, threading.Event(), True))
    assert lines[-1] == "data: [DONE]\n\n"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def test_a_refusal_after_the_first_event_ends_with_an_error_event(service):
    sent = events(service, [Message("user", [TextPart("hi")])], SamplingParams(max_new_tokens=0))
    assert sent[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sent[-1]["error"]["type"] == "invalid_request_error" and "max_new_tokens" in sent[-1]["error"]["message"]


def test_an_unexpected_failure_ends_with_a_server_error_event(service, caplog):
    sent = events(service, None, SamplingParams(max_new_tokens=2))  # not a conversation: a TypeError inside
    assert sent[-1]["error"] == {
        "message": "Generating this answer failed on the server.",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert "failed while streaming" in caplog.text


def test_a_whole_stream_has_one_finish_then_its_usage(service):
    sent = events(service, [Message("user", [TextPart("hi")])], SamplingParams(max_new_tokens=3))
    answer, last = sent[:-1], sent[-1]
    finishes = [e["choices"][0]["finish_reason"] for e in answer]
    assert finishes[:-1] == [None] * (len(answer) - 1) and finishes[-1] in ("stop", "length")
    assert not any("usage" in e for e in answer)
    assert last["choices"] == [] and last["usage"]["completion_tokens"] >= 1  # include_usage: a chunk of its own
