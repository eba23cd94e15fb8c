"""The HTTP API's messages become typed parts straight from its pydantic parts (no part dicts in
between), decoded with the server's limits, a part that cannot be read naming itself; and a video
sent to the API reaches the remote backend as the local prompt holds it: its frames, then its note.
No model and no server: these are the conversions alone."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from app.chat_content import image_part, to_messages
from app.chat_schema import ChatCompletionRequest, ImageContent
from core.errors import InvalidRequest, MediaError
from core.settings import Settings
from engine.prompt_items import video_note
from engine.remote import openai_messages
from engine.request import GenerationRequest
from media.limits import MediaLimits
from media.parts import AudioPart, ImagePart, TextPart, VideoPart
from tooling.inputs import encode_audio, make_photo, make_tone, write_video


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png() -> bytes:
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format="PNG")
    return buffer.getvalue()


def messages(*raw: dict) -> list:
    return ChatCompletionRequest.model_validate({"messages": list(raw)}).messages


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def test_each_content_part_becomes_its_typed_part():
    wav = base64.b64encode(encode_audio(make_tone(1.0, rate=8000), 8000, "wav")).decode()
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    typed = to_messages(
        messages(
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    image(data_uri("image/png", png())),
                    {"type": "text", "text": "and this?"},
                    {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
        ),
        Settings(),
    )
    assert [m.role for m in typed] == ["system", "user", "assistant"]
    assert typed[0].parts == [TextPart("Be brief.")]
    photo, text, audio = typed[1].parts
    assert isinstance(photo, ImagePart) and photo.image.size == (64, 48) and photo.image.mode == "RGB"
    assert text == TextPart("and this?")
    assert isinstance(audio, AudioPart) and audio.samples.dtype == np.float32 and len(audio.samples) == 16000
    assert [type(p) for p in typed[2].parts] == [TextPart, TextPart] and '"name": "f"' in typed[2].parts[1].text


def test_a_pydantic_image_part_decodes_to_an_image_part_and_its_errors_name_it():
    where = "messages[2].content[1]"
    part = ImageContent.model_validate({"type": "image_url", "image_url": {"url": data_uri("image/png", png())}})
    assert isinstance(image_part(part, where, MediaLimits()), ImagePart)
    for url, message in [
        ("https://example.com/cat.png", "never fetches URLs"),
        ("data:image/png;base64,@@@", "not valid base64"),
    ]:
        with pytest.raises(InvalidRequest, match=message) as err:
            image_part(ImageContent.model_validate(image(url)), where, MediaLimits())
        assert err.value.param == where


@pytest.mark.parametrize(
    "part, param, message",
    [
        (image("data:image/png;base64,@@@"), "messages[1].content[1]", "not valid base64"),
        ({"type": "input_audio", "input_audio": {"data": "@@@"}}, "messages[1].content[1]", "must be base64"),
        ({"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}, "messages[1].content[1]", "never fetches"),
        # media that decode badly: the loader's error gets the part's place too
        (image(data_uri("image/png", png()[:40])), "messages[1].content[1]", "could not be decoded"),
        (image(data_uri("image/png", b"")), "messages[1].content[1]", "empty"),
        (image(data_uri("image/png", encode_audio(make_tone(0.2), 16000, "wav"))), "messages[1].content[1]", "decoded"),
        ({"type": "video_url", "video_url": {"url": data_uri("video/mp4", png())}}, "messages[1].content[1]", "video"),
        # shorter than one feature window (25 ms): was a 500 from the feature extractor's torch.cat
        (
            {
                "type": "input_audio",
                "input_audio": {"data": base64.b64encode(encode_audio(make_tone(0.01), 16000, "wav")).decode()},
            },
            "messages[1].content[1]",
            "too short",
        ),
    ],
)
def test_a_bad_part_in_a_conversation_is_named_by_its_place(part, param, message):
    raw = messages(
        {"role": "system", "content": "hi"}, {"role": "user", "content": [{"type": "text", "text": "x"}, part]}
    )
    with pytest.raises(InvalidRequest, match=message) as err:
        to_messages(raw, Settings())
    assert err.value.param == param


def test_the_servers_limits_apply():
    wav = base64.b64encode(encode_audio(make_tone(3.0), 16000, "wav")).decode()
    raw = messages({"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": wav}}]})
    assert to_messages(raw, Settings(max_chat_audio_seconds=4))[0].parts[0].seconds == pytest.approx(3.0)
    with pytest.raises(MediaError, match="takes up to"):
        to_messages(raw, Settings(max_chat_audio_seconds=2))


def test_a_video_sent_to_the_api_reaches_the_remote_backend_as_its_frames_then_its_note(tmp_path):
    write_video(tmp_path / "clip.mp4", seconds=2, fps=10)
    video = data_uri("video/mp4", (tmp_path / "clip.mp4").read_bytes())
    raw = messages(
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": "?"}]}
    )
    typed = to_messages(raw, Settings(video_frames=3))
    part, question = typed[0].parts
    assert isinstance(part, VideoPart) and len(part.frames) == 3 and part.soundtrack is None
    assert question == TextPart("?")
    (message,) = openai_messages(GenerationRequest(typed))
    assert [p["type"] for p in message["content"]] == ["image_url"] * 3 + ["text", "text"]
    assert message["content"][3]["text"] == video_note(part) + "\n"
    assert "These 3 frames are from a 2.0-second video" in video_note(part)
    assert message["content"][4] == {"type": "text", "text": "?"}
