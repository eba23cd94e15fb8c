"""Stop in the web glue, on the tiny checkpoint through the real engine: a stopped answer ends
as "cancelled" with the metrics of what was generated, and a Stop that reaches an answer still in
the queue stops it as soon as it starts; a Stop with nothing queued stops nothing later."""

from __future__ import annotations

from app.service import ConversationService
from app.web import WebApp
from core.settings import Settings
from safety.mitigations import MitigationPolicy


def glue(engine, tmp_path) -> WebApp:
    settings = Settings()
    return WebApp(ConversationService(engine, MitigationPolicy.from_settings(settings)), settings, [str(tmp_path)])


def options(web: WebApp, tokens: int):
    chosen = web.default_options()
    chosen.max_new_tokens = tokens
    return chosen


def test_stop_ends_a_running_answer_with_its_metrics(engine, tmp_path):
    web = glue(engine, tmp_path)
    shown = []
    for step in web.chat("Tell me everything.", [], [], options(web, 2048), session="s1"):
        shown.append(step)
        if len(shown) == 5:
            web.stop_answer("s1", "chat")
    last = shown[-1]
    assert last.stopped and "base adapter" in last.metrics and len(shown) < 100
    assert not any(step.stopped for step in shown[:-1])


def test_stop_reaches_a_queued_answer_and_no_later_one(engine, tmp_path):
    web = glue(engine, tmp_path)
    web.stop_answer("s2", "chat")  # nothing queued: nothing to stop, now or later
    first = list(web.chat("Hi", [], [], options(web, 8), session="s2"))
    assert not first[-1].stopped and first[-1].metrics
    web.answer_queued("s2", "chat")
    web.stop_answer("s2", "chat")  # while it waits in the queue
    queued = list(web.chat("Hi", [], [], options(web, 2048), session="s2"))
    assert queued[-1].stopped and queued[-1].metrics and len(queued) < 5
