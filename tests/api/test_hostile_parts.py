"""A hostile client's content parts and a forced blocked phrase against the real server: a part
whose media cannot be read is a 400 naming its place on every door that takes parts (chat,
Responses, tokenize, the transcription form), never a 500; and a phrase the output guard blocks,
written token by token (a grammar makes the tiny model write it), never shows in any streamed
delta of an answer about a recording."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest

from tests.conftest import API_KEY
from tooling.inputs import encode_audio, make_photo, make_tone

KEYED = {"Authorization": f"Bearer {API_KEY}"}
TINY_CLIP = encode_audio(make_tone(0.01), 16000, "wav")  # 160 samples: under one 25 ms feature window
LEAD = "Thanks for the clip. It says that fire is hot, which is true, and that water is wet. " * 2
PHRASE = "The speaker is probably a woman in her thirties."


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio(data: bytes) -> dict:
    return {"type": "input_audio", "input_audio": {"data": b64(data), "format": "wav"}}


BAD_PARTS = {
    "truncated png": {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(b"\x89PNG\r\n\x1a\n")}},
    "a wav as an image": {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(TINY_CLIP)}},
    "empty audio": audio(b""),
    "too short audio": audio(TINY_CLIP),
    "png as video": {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + b64(b"\x89PNG\r\n\x1a\n")}},
}


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, headers=KEYED, timeout=120)


@pytest.mark.parametrize("name", BAD_PARTS)
def test_a_part_that_cannot_be_read_is_a_400_naming_it_on_every_door(web_server, name):
    part = BAD_PARTS[name]
    content = [{"type": "text", "text": "what is this?"}, part]
    for path, body, param in [
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": content}], "max_tokens": 2},
            "messages[0].content[1]",
        ),
        ("/tokenize", {"messages": [{"role": "user", "content": content}]}, "messages[0].content[1]"),
    ]:
        response = post(web_server, path, body)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["param"] == param, (path, response.text)
    if part["type"] != "video_url":  # the Responses API has no video part
        items = {"image_url": {"type": "input_image", "image_url": part.get("image_url", {}).get("url")}}
        item = items.get(part["type"], part)
        response = post(web_server, "/v1/responses", {"input": [{"role": "user", "content": [item]}]})
        assert response.status_code == 400 and response.json()["error"]["param"] == "input", response.text
    assert httpx.get(web_server + "/health", timeout=10).json()["status"] == "ok"


def test_a_too_short_recording_is_a_400_on_the_transcription_routes(web_server):
    for data in ({}, {"stream": "true"}):
        response = httpx.post(
            web_server + "/v1/audio/transcriptions",
            files={"file": ("tiny.wav", TINY_CLIP)},
            data=data,
            headers=KEYED,
            timeout=60,
        )
        assert response.status_code == 400 and "too short" in response.json()["error"]["message"], response.text


def forced(content: list, stream: bool) -> dict:
    """A request whose grammar leaves the model one answer: the lead, then the phrase."""
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": [LEAD + PHRASE]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    return {
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 300,
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema, "strict": True}},
    }


def streamed(url: str, body: dict) -> tuple[list[str], str | None]:
    deltas, finish = [], None
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=KEYED, timeout=120) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    deltas.append(choice["delta"].get("content") or "")
                    finish = choice["finish_reason"] or finish
    return deltas, finish


@pytest.mark.slow  # two forced answers of ~70 tokens
def test_a_blocked_phrase_written_token_by_token_never_shows_in_a_stream(web_server):
    question = {"type": "text", "text": "Who is speaking?"}
    deltas, finish = streamed(web_server, forced([audio(encode_audio(make_tone(1.0), 16000, "wav")), question], True))
    assert finish == "content_filter"
    *before, refusal = [d for d in deltas if d]
    assert "can't help" in refusal
    assert ('{"answer":"' + LEAD).startswith("".join(before))  # innocent text only, none of the phrase
    assert len("".join(before)) > 20  # (the lead did stream: the guard held back only the window)
    # the same answer without a recording is a text-only chat: nothing to block
    deltas, finish = streamed(web_server, forced([question], True))
    assert PHRASE in "".join(deltas) and finish == "stop"


@pytest.mark.parametrize("role", ["system", "developer"])
def test_media_in_a_system_message_is_refused_not_dropped_unseen(web_server, role):
    """Only a system message's text joins the system prompt: its image was dropped without a word
    (a 200 answering as if it had never been sent), where any other non-user role's is a 400."""
    buffer = io.BytesIO()
    make_photo(32, 32).save(buffer, format="PNG")
    photo = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + b64(buffer.getvalue())}}
    body = {"messages": [{"role": role, "content": [photo]}, {"role": "user", "content": "hi"}], "max_tokens": 2}
    response = post(web_server, "/v1/chat/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "messages[0]", response.text
