"""An OpenAI chat request's messages (app/chat_schema.py's pydantic parts) -> typed messages
(media/parts.py), straight: one function per content-part kind, decoded by media's loaders with
the server's limits. A part that cannot be read names itself (`messages[i].content[j]`)."""

from __future__ import annotations

import base64
import binascii

from app.chat_schema import AudioContent, ChatMessage, ImageContent, TextContent, VideoContent
from app.tool_calls import as_text
from core.errors import InvalidRequest
from core.settings import Settings
from media.audio import load_audio
from media.images import load_image
from media.limits import MediaLimits
from media.parts import AudioPart, ImagePart, Message, Part, TextPart, VideoPart
from media.video import load_video

ROLE_NAMES = {"developer": "system"}  # OpenAI's newer name for the system role


def _data_uri(url: str, param: str) -> bytes:
    if not url.startswith("data:"):
        raise InvalidRequest(
            "Only data: URIs are accepted; this server never fetches URLs. Send the file as data:<mime>;base64,<data>.",
            param=param,
        )
    try:
        header, payload = url.split(",", 1)
        return base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
    except (ValueError, binascii.Error):
        raise InvalidRequest("The data: URI is not valid base64.", param=param) from None


def text_part(part: TextContent, where: str, limits: MediaLimits) -> TextPart:
    return TextPart(part.text)


def image_part(part: ImageContent, where: str, limits: MediaLimits) -> ImagePart:
    return ImagePart(load_image(_data_uri(part.image_url.url, where), limits))


def video_part(part: VideoContent, where: str, limits: MediaLimits) -> VideoPart:
    return load_video(_data_uri(part.video_url.url, where), limits)


def audio_part(part: AudioContent, where: str, limits: MediaLimits) -> AudioPart:
    try:
        data = base64.b64decode(part.input_audio.data, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidRequest("input_audio.data must be base64.", param=where) from None
    return load_audio(data, limits)


TO_PART = {TextContent: text_part, ImageContent: image_part, VideoContent: video_part, AudioContent: audio_part}


def _decoded(part, where: str, limits: MediaLimits) -> Part:
    """One part, typed; a media loader's error (it knows no place) names the part it came from."""
    try:
        return TO_PART[type(part)](part, where, limits)
    except InvalidRequest as err:
        err.param = err.param or where
        raise


def message_parts(message: ChatMessage, i: int, limits: MediaLimits) -> list[Part]:
    """The i-th message's content as typed parts, media decoded."""
    if isinstance(message.content, list):
        parts = [_decoded(part, f"messages[{i}].content[{j}]", limits) for j, part in enumerate(message.content)]
    else:
        parts = [TextPart(message.content or "")]
    if message.tool_calls:  # an earlier call goes back as the model wrote it
        parts.append(TextPart(as_text(message.tool_calls)))
    return parts


def to_messages(raw: list[ChatMessage], settings: Settings) -> list[Message]:
    """The request's messages -> typed messages, media decoded (CPU work: run off the event loop)."""
    if not raw:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    limits = MediaLimits.from_settings(settings)
    return [Message(ROLE_NAMES.get(m.role, m.role), message_parts(m, i, limits)) for i, m in enumerate(raw)]
