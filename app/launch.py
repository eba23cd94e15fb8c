"""`phi4mm serve`: load the engine once and serve the web app plus `GET /health`."""

from __future__ import annotations

import mimetypes
import threading
from typing import Iterator

from app.settings import Settings
from engine.audio import load_audio
from engine.errors import Phi4mmError
from engine.images import load_image
from engine.limits import MediaLimits
from engine.request import ImagePart, Message, SamplingParams, TextPart
from engine.video import load_video


def _parts_from_gradio(message: dict | str, limits: MediaLimits) -> list:
    if isinstance(message, str):
        return [TextPart(message)]
    parts = []
    for item in message.get("files", []):
        path = item if isinstance(item, str) else item.get("path")
        kind = (mimetypes.guess_type(path)[0] or "").split("/")[0]
        if kind == "image":
            parts.append(ImagePart(load_image(path, limits)))
        elif kind == "video":
            parts.append(load_video(path, limits))
        else:  # audio, or unknown: the audio decoder sniffs the content and explains a refusal
            parts.append(load_audio(path, limits))
    if message.get("text"):
        parts.append(TextPart(message["text"]))
    return parts


def _history_to_messages(history: list[dict], limits: MediaLimits) -> list[Message]:
    """Gradio's messages history -> engine messages (text turns; files are re-read from their paths)."""
    messages: list[Message] = []
    for turn in history:
        content = turn.get("content")
        items = content if isinstance(content, list) else [content]
        parts = []
        for item in items:
            if isinstance(item, str):
                parts.append(TextPart(item))
            elif isinstance(item, dict) and item.get("type") == "text":
                parts.append(TextPart(item.get("text", "")))
            elif isinstance(item, dict) and turn["role"] == "user" and item.get("type") == "file":
                parts.extend(_parts_from_gradio({"files": [item["file"]]}, limits))
        if messages and messages[-1].role == turn["role"]:
            messages[-1].parts.extend(parts)
        else:
            messages.append(Message(turn["role"], parts))
    return messages


def make_respond(service, settings: Settings):
    limits = settings.media_limits()

    def respond(history: list[dict], message) -> Iterator[str]:
        answer, cancel = "", threading.Event()
        try:
            messages = _history_to_messages(history, limits) + [Message("user", _parts_from_gradio(message, limits))]
            for reply in service.chat(messages, SamplingParams(max_new_tokens=settings.max_new_tokens),
                                      max_crops=settings.max_crops, cancel=cancel):
                answer = reply.text if reply.replace else answer + reply.text
                yield answer
        except Phi4mmError as err:
            yield f"⚠️ {err}"
        finally:
            cancel.set()  # the browser went away or pressed stop

    return respond


def serve(settings: Settings) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from app.service import ConversationService
    from engine.engine import Engine
    from ui.chat import build_chat

    engine = Engine.load(settings.load_options(), settings.context_window, settings.media_limits())
    service = ConversationService(engine, settings.mitigation_policy())
    api = FastAPI()

    @api.get("/health")
    def health():
        return {"status": "ok", "model": settings.model, "device": str(engine.device), "adapters": list(engine.router.adapters)}

    demo = build_chat(make_respond(service, settings))
    demo.queue(max_size=32, default_concurrency_limit=1)
    app = gr.mount_gradio_app(
        api, demo, path="/", max_file_size=f"{settings.max_upload_mb}mb", enable_monitoring=False, ssr_mode=False
    )
    uvicorn.run(app, host=settings.host, port=settings.port)
