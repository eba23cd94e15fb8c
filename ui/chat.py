"""A first chat page: text, images and audio in, streamed answers out. Only Gradio code here;
the answer comes from the `respond` callable the app hands in."""

from __future__ import annotations

from typing import Callable, Iterator

import gradio as gr

# respond(history_messages, new_message) -> yields the answer text so far
Respond = Callable[[list[dict], dict], Iterator[str]]


def build_chat(respond: Respond, title: str = "Phi-4-multimodal") -> gr.Blocks:
    def answer(message: dict, history: list[dict]) -> Iterator[str]:
        yield from respond(history, message)  # a generator function, so Gradio streams it

    with gr.Blocks(title=title) as demo:
        gr.Markdown(f"## {title}\nChat with text, photos and audio. Answers stream as they are written.")
        gr.ChatInterface(
            fn=answer,
            multimodal=True,
            textbox=gr.MultimodalTextbox(file_types=["image", "audio", "video"], file_count="multiple"),
            api_name="chat",
        )
    return demo
