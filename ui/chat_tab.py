"""The Chat tab: gr.ChatInterface with the page's settings, the chats kept in the browser
(ui/kept_chats.py), and a Stop that ends the answer with its metrics line."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from gradio import utils

from ui.gpu import gpu
from ui.kept_chats import KeptChatsInterface
from ui.options import ChatOptions
from ui.page_text import answers_only, failed, from_api, page_text, warning, with_metrics

EXAMPLES = Path(__file__).parent / "examples"


class ChatBox(KeptChatsInterface):
    """Two changes to gr.ChatInterface (Gradio 6.31, pinned; browser tests hold both):
    - it blanks the message box's placeholder when a message is sent and never puts it back, so
      from the second message on the box gave no hint;
    - its Stop cancels the event, which closes the answer's stream: the answer had no metrics line
      and was not kept. Here Stop asks the web glue to stop generating, and the answer ends as
      any other does, marked as stopped, with its metrics."""

    def __init__(self, *args, web, **kwargs):
        self.web = web
        super().__init__(*args, **kwargs)

    def _clear_and_save_textbox(self, message, request: gr.Request):
        self.web.answer_queued(request.session_hash, "chat")  # a Stop stops it while it waits, too
        return type(self.textbox)("", interactive=False, placeholder=self.textbox.placeholder), message

    def stop_chat(self, request: gr.Request):
        self.web.stop_answer(request.session_hash, "chat")

    def _setup_stop_events(self, event_triggers, events_to_cancel, after_success) -> None:
        answering = utils.async_lambda(lambda: gr.MultimodalTextbox(submit_btn=False, stop_btn=self.original_stop_btn))
        done = utils.async_lambda(lambda: gr.MultimodalTextbox(submit_btn=self.textbox.submit_btn, stop_btn=False))
        after_success.success(answering, None, [self.textbox], api_visibility="undocumented")
        for trigger in event_triggers:
            trigger(answering, None, [self.textbox], api_visibility="undocumented")
        for event in events_to_cancel:
            event.then(done, None, [self.textbox], api_visibility="undocumented")
        self.textbox.stop(self.stop_chat, None, None, api_visibility="undocumented")


def chat_tab(web) -> tuple[str, ...]:
    """The Chat tab's contents, inside a `gr.Tab`; `web` is the web glue (app/web.py) -> its public events."""
    settings = web.settings

    @gpu
    def chat(
        message: dict,
        history: list[dict],
        system: str,
        max_tokens: int,
        temperature: float,
        top_p: float,
        crops: int,
        frames: int,
        request: gr.Request,
    ):
        options = ChatOptions(system, max_tokens, temperature, top_p, crops, frames)
        api = from_api(request)
        try:
            text, files = message.get("text", ""), message.get("files", [])
            for shown in web.chat(text, files, answers_only(history), options, request.session_hash):
                # the page shows the metrics line under the answer; a client gets it apart from the answer
                yield (shown.text if api else page_text(shown)), with_metrics(shown)
        except Exception as err:  # the request's boundary: a short message, never a traceback
            yield from ((shown, "") for shown in failed(warning(err), request))

    inputs = [  # render=False: ChatInterface places them in its Settings accordion
        gr.Textbox(
            "", label="System prompt", placeholder="Optional. Safety instructions always apply.", lines=2, render=False
        ),
        gr.Slider(
            16, 4096, value=settings.max_new_tokens, step=16, label="Max new tokens", render=False, elem_id="max-tokens"
        ),
        gr.Slider(0, 2, value=0, step=0.05, label="Temperature (0 = greedy, the model's default)", render=False),
        gr.Slider(0.05, 1, value=1, step=0.05, label="Top-p", render=False),
        gr.Slider(
            1, 64, value=settings.max_crops, step=1, label="Crop budget per image (fewer = faster)", render=False
        ),
        gr.Slider(1, 64, value=settings.video_frames, step=1, label="Video frames", render=False),
    ]
    # the answer's metrics line apart, for API clients (the page shows it under the answer)
    metrics = gr.Textbox(label="Metrics", visible=False, render=False)
    ChatBox(
        fn=chat,
        web=web,
        multimodal=True,
        chatbot=gr.Chatbot(
            height=520,
            placeholder="Ask anything, or attach a photo, a video or a voice note.",
            buttons=["copy"],
            elem_id="chatbot",
            show_label=False,
        ),
        textbox=gr.MultimodalTextbox(
            sources=["upload", "microphone"],
            file_types=["image", "audio", "video"],
            file_count="multiple",
            placeholder="Message, or drop files here",
            elem_id="chat-input",
            submit_btn=True,
            stop_btn=True,
        ),
        additional_inputs=inputs,
        additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
        additional_outputs=[metrics],
        examples=[
            [{"text": "What is in this picture?", "files": [str(EXAMPLES / "sunset.png")]}],
            [{"text": "", "files": [str(EXAMPLES / "question.wav")]}],
            [{"text": "Write a haiku about the sea.", "files": []}],
        ],
        example_labels=["Describe a photo", "Answer a spoken question", "Just text"],
        api_name="chat",
    )
    metrics.render()
    return ("chat",)
