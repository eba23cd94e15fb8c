"""Turn what callers send (dict parts, files, bytes, arrays) into the engine's typed parts."""

from __future__ import annotations

from typing import Any

from core.errors import InvalidRequest
from media.audio import load_audio
from media.images import load_image
from media.limits import MediaLimits
from media.parts import MEDIA_PARTS, ImagePart, Message, Part, TextPart
from media.video import load_video

PART_TYPES = ("text", "image", "audio", "video")


def parse_part(raw: Any, limits: MediaLimits = MediaLimits()) -> Part:
    """`{"type": "text"|"image"|"audio"|"video", <type>: payload}` (or a ready part) -> a typed part."""
    if isinstance(raw, (TextPart, *MEDIA_PARTS)):
        return raw
    if isinstance(raw, str):
        return TextPart(raw)
    kind = raw.get("type") if isinstance(raw, dict) else None
    payload = raw.get(kind) if kind in PART_TYPES else None
    if kind == "text" and isinstance(payload, str):
        return TextPart(payload)
    if kind == "image" and payload is not None:
        return ImagePart(load_image(payload, limits))
    if kind == "audio" and payload is not None:
        return load_audio(payload, limits)
    if kind == "video" and payload is not None:
        return load_video(payload, limits)
    if kind in PART_TYPES:
        raise InvalidRequest(f"A {kind!r} part is missing its {kind!r} field.", param="messages")
    raise InvalidRequest(
        f"Unknown message part type {kind!r}; supported types are {', '.join(PART_TYPES)}.", param="messages"
    )


def parse_messages(raw_messages: list[dict], limits: MediaLimits = MediaLimits()) -> list[Message]:
    """OpenAI-like `[{"role", "content": str | [parts]}]` -> typed messages."""
    messages = []
    for raw in raw_messages:
        if not isinstance(raw, dict) or "role" not in raw:
            raise InvalidRequest("Each message needs a `role` and `content`.", param="messages")
        content = raw.get("content", "")
        parts = [TextPart(content)] if isinstance(content, str) else [parse_part(p, limits) for p in content]
        messages.append(Message(raw["role"], parts))
    return messages
