"""Which events run the model, as the page declares them (ui/gpu.py's `@gpu`, no list of names):
every one of them is in the one concurrency group with the settings' limit, nothing else is, and
app/event_guard.py refuses a page where that does not hold. The Blocks are built as `serve` builds
them, with a web glue that is never called."""

from __future__ import annotations

from dataclasses import replace

import gradio as gr
import pytest

from app.event_guard import guard_events
from app.private_folder import PrivateFolder
from core.settings import Settings
from tests.ui.test_page_layout import Glue
from ui.app import build_app
from ui.gpu import MODEL_GROUP, gpu, join_model_group

# ChatInterface wraps the chat function in its own for each way to send: a message, retry, an
# example, an option (`_submit_fn`), and the call by name (`chat`)
MODEL_EVENTS = ["_submit_fn"] * 4 + ["chat", "photo_by_voice", "transcribe", "summarize", "live_stop"]


def grouped(page: gr.Blocks) -> list[tuple[str, int]]:
    return [
        (event.api_name.rstrip("_0123456789"), event.concurrency_limit)
        for event in page.fns.values()
        if event.concurrency_id == MODEL_GROUP
    ]


@pytest.mark.parametrize("backend, limit", [("local", 3), ("openai", 32)])
def test_the_events_that_run_the_model_share_one_group_at_the_settings_limit(tmp_path, backend, limit):
    settings = replace(Settings(), backend=backend, max_batch=3)
    page = build_app(Glue(settings))
    assert sorted(grouped(page)) == sorted((name, settings.inflight()) for name in MODEL_EVENTS)
    assert settings.inflight() == limit
    public = guard_events(page, PrivateFolder(str(tmp_path), 60))
    assert public == {"chat", "photo_by_voice", "transcribe", "summarize", "stop_meeting"}


def test_a_page_with_a_model_event_outside_the_group_is_refused(tmp_path):
    @gpu
    def answer(text: str) -> str:
        return text

    with gr.Blocks() as page:
        box = gr.Textbox()
        gr.Button().click(answer, box, box)
    with pytest.raises(RuntimeError, match="answer"):
        guard_events(page, PrivateFolder(str(tmp_path), 60))
    join_model_group(page, 2)
    guard_events(page, PrivateFolder(str(tmp_path), 60))  # once in the group, it is served


def test_a_light_event_in_the_model_group_is_refused(tmp_path):
    page = build_app(Glue(Settings()))
    stop = next(event for event in page.fns.values() if event.api_name == "stop_meeting")
    stop.concurrency_id = MODEL_GROUP
    with pytest.raises(RuntimeError, match="stop_meeting"):
        guard_events(page, PrivateFolder(str(tmp_path), 60))
