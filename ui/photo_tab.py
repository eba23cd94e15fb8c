"""The Photo by voice tab: a photo and a spoken (or typed) question about it; the answer can be
read aloud by the browser."""

from __future__ import annotations

import json

import gradio as gr

from ui.gpu import gpu
from ui.page_text import FOOTER, WARNING, failed, page_text, warning
from ui.stop import answer_with_stop

# Hands-free: the browser's speech synthesis reads the answer (no model, nothing leaves the page),
# less the metrics line and the warning sign; a new answer cuts off one still being read.
READ_ALOUD_JS = f"""(on, text) => {{
  if (!on || !text || !window.speechSynthesis) return;
  const spoken = text.split({json.dumps(FOOTER)})[0].replace({json.dumps(WARNING)}, "").replace(/[*_#`>|]/g, "");
  window.speechSynthesis.cancel();
  window.speechSynthesis.speak(new SpeechSynthesisUtterance(spoken.trim()));
}}"""


def photo_tab(web) -> tuple[str, ...]:
    """The tab's contents, inside a `gr.Tab`; `web` is the web glue (app/web.py) -> its public events."""

    @gpu
    def photo_by_voice(image: str | None, audio: str | None = None, question: str = "", request: gr.Request = None):
        if not image:
            yield from failed(f"{WARNING}Take or upload a photo first.", request)
            return
        if not audio and not question.strip():
            yield from failed(f"{WARNING}Record or type a question about the photo.", request)
            return
        try:
            for shown in web.photo_by_voice(image, audio, question, web.default_options(), request.session_hash):
                yield page_text(shown)
        except Exception as err:  # the request's boundary
            yield from failed(warning(err), request)

    with gr.Row():
        photo = gr.Image(
            sources=["upload", "webcam"], type="filepath", label="Photo", height=360, elem_id="photo-input"
        )
        with gr.Column():
            voice = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Spoken question", elem_id="voice-input"
            )
            typed = gr.Textbox("", label="…or type the question", placeholder="What am I looking at?")
            with gr.Row():
                ask = gr.Button("Ask about the photo", variant="primary")
                stop = gr.Button("Stop", variant="stop", elem_id="photo-stop")
            read_aloud = gr.Checkbox(
                False, label="Read the answer aloud (your browser's own voice)", elem_id="read-aloud"
            )
    answer = gr.Markdown(label="Answer", elem_id="photo-answer")
    asked = answer_with_stop(
        web, "photo", ask, stop, photo_by_voice, [photo, voice, typed], answer, api_name="photo_by_voice"
    )
    asked.then(None, [read_aloud, answer], None, js=READ_ALOUD_JS, queue=False)
    return ("photo_by_voice",)
