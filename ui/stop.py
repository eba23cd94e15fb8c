"""An answer with its own Stop, as the Photo by voice and Speech tabs wire it (the Chat tab's Stop
is ChatInterface's, ui/chat_tab.py): the Stop ends the tab's answer, running or still queued."""

from __future__ import annotations

import gradio as gr


def answer_with_stop(web, tab: str, run: gr.Button, stop: gr.Button, fn, inputs, outputs, api_name: str):
    """`run` answers with `fn` (public as `api_name`); `stop` ends that answer -> the answer's event."""

    def queued(request: gr.Request):  # before the answer queues: a Stop meanwhile stops it too
        web.answer_queued(request.session_hash, tab)

    def stop_answer(request: gr.Request):
        web.stop_answer(request.session_hash, tab)

    answered = run.click(queued, None, None).then(fn, inputs, outputs, api_name=api_name)
    stop.click(stop_answer, None, None)
    return answered
