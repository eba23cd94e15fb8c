"""Admission control and the service's finish hook, without a server."""

from __future__ import annotations

import pytest

from app.admission import Admission
from app.service import ConversationService
from core.errors import InvalidRequest, Overloaded
from core.settings import Settings
from engine.request import SamplingParams
from media.parts import Message, TextPart


def test_admission_refuses_past_slots_plus_queue_and_gives_places_back():
    admission = Admission(max_inflight=1, queue_size=2)
    tickets = [admission.enter() for _ in range(3)]
    assert (admission.running, admission.queued) == (1, 2)
    with pytest.raises(Overloaded) as refused:
        admission.enter()
    assert refused.value.retry_after >= 1 and "busy" in str(refused.value)
    tickets[0].release()
    tickets[0].release()  # idempotent: a place is given back once
    assert admission.admitted == 2
    admission.enter()  # the freed place is usable again


def test_slots_follow_the_batch_size_or_the_remote_default():
    assert Settings().inflight() == 16 and Settings(max_batch=1).inflight() == 1
    assert Settings(backend="openai").inflight() == 32
    assert Settings(backend="openai", max_inflight=4).inflight() == 4


@pytest.mark.parametrize("max_inflight, inflight", [(None, 32), (4, 4)])
def test_a_remote_backend_keeps_as_many_requests_in_flight_as_admission_lets_in(max_inflight, inflight):
    """Both read `Settings.inflight()` (admission: app/server.py); nothing is sent to the remote here."""
    from engine.backends import open_engine

    settings = Settings(backend="openai", base_url="http://127.0.0.1:9/v1", max_inflight=max_inflight)
    assert open_engine(settings).concurrency == settings.inflight() == inflight


def test_on_finish_sees_every_generation_once_including_a_closed_stream(engine):
    finished = []
    service = ConversationService(engine, on_finish=finished.append)
    hello = [Message("user", [TextPart("Hello")])]
    service.answer(hello, SamplingParams(max_new_tokens=3))
    stream = service.chat(hello, SamplingParams(max_new_tokens=500))
    next(stream)
    stream.close()  # a dropped client
    with pytest.raises(InvalidRequest):  # refused before generating: not a generation
        list(service.chat([Message("user", [TextPart("x" * 40_000)])]))
    assert [r.finish_reason for r in finished] == ["length", "cancelled"]
    assert finished[0].metrics.completion_tokens == 3 and finished[1].adapter == "base"
