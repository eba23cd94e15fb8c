"""The official `openai` client against a real `phi4mm serve` on 127.0.0.1: text, image and
audio chat, streaming, the adapter header on every answer, and OpenAI-shaped errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import openai
import pytest

from tests.conftest import API_KEY
from tooling.inputs import write_video, write_video_with_speech

EXAMPLES = Path(__file__).resolve().parents[2] / "ui" / "examples"


@pytest.fixture
def client(web_server):
    return openai.OpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


IMAGE = {"type": "image_url", "image_url": {"url": data_uri(EXAMPLES / "sunset.png", "image/png")}}
AUDIO = {
    "type": "input_audio",
    "input_audio": {"data": base64.b64encode((EXAMPLES / "question.wav").read_bytes()).decode(), "format": "wav"},
}


@pytest.mark.parametrize(
    "content, adapter",
    [
        ("Hello!", "base"),
        ([IMAGE, {"type": "text", "text": "What is this?"}], "vision"),
        ([AUDIO], "speech"),
        ([IMAGE, AUDIO], "vision"),
    ],
)
def test_chat_with_each_modality(client, content, adapter):
    raw = client.chat.completions.with_raw_response.create(
        model="phi4mm", messages=[{"role": "user", "content": content}], max_tokens=8
    )
    assert raw.headers["x-phi4mm-adapter"] == adapter
    completion = raw.parse()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens > 5
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_a_video_is_seen_and_heard(client, tmp_path):
    """A `video_url` part (vLLM's name) with a soundtrack: the vision adapter, and the sound's audio
    tokens on top of what the same frames cost without it (12.5 per second)."""
    speech = write_video_with_speech(tmp_path / "spoken.mp4", "Look at the red ball.", tmp_path)
    seconds = len(speech) / 22050 + 0.5
    write_video(tmp_path / "mute.mp4", seconds=seconds)

    def prompt_tokens(path):
        video = {"type": "video_url", "video_url": {"url": data_uri(path, "video/mp4")}}
        raw = client.chat.completions.with_raw_response.create(
            model="phi4mm",
            messages=[{"role": "user", "content": [video, {"type": "text", "text": "What is said?"}]}],
            max_tokens=4,
        )
        assert raw.headers["x-phi4mm-adapter"] == "vision"
        return raw.parse().usage.prompt_tokens

    assert prompt_tokens(tmp_path / "spoken.mp4") - prompt_tokens(tmp_path / "mute.mp4") >= 12 * seconds


def test_streaming(client):
    with client.chat.completions.with_streaming_response.create(
        model="phi4mm",
        messages=[{"role": "user", "content": [AUDIO]}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-phi4mm-adapter"] == "speech"
        chunks = list(response.parse())
    chunks, usage = chunks[:-1], chunks[-1]  # usage comes last, in a chunk of its own (issue 17)
    assert usage.choices == [] and usage.usage.completion_tokens >= 1
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_a_shared_system_turn_is_reported_as_cached_tokens(client):
    """The server's system prompt opens every conversation; from the second request with the same
    one on, its tokens are kept, not computed again, and usage says so as OpenAI's does
    (`prompt_tokens_details.cached_tokens`, Responses' `input_tokens_details`), streamed too."""
    messages = [{"role": "system", "content": "Reply in French."}, {"role": "user", "content": "Bonjour"}]
    client.chat.completions.create(model="phi4mm", messages=messages, max_tokens=1)
    plain = client.chat.completions.create(model="phi4mm", messages=messages, max_tokens=1).usage
    streamed = list(
        client.chat.completions.create(
            model="phi4mm", messages=messages, max_tokens=1, stream=True, stream_options={"include_usage": True}
        )
    )[-1].usage
    response = client.responses.create(
        model="phi4mm", instructions="Reply in French.", input="Bonjour", max_output_tokens=1
    )
    for usage in (plain, streamed):
        assert 40 < usage.prompt_tokens_details.cached_tokens < usage.prompt_tokens
    assert response.usage.input_tokens_details.cached_tokens == plain.prompt_tokens_details.cached_tokens
    other = client.chat.completions.create(model="phi4mm", messages=[messages[1]], max_tokens=1).usage
    assert other.prompt_tokens_details.cached_tokens < plain.prompt_tokens_details.cached_tokens  # another turn
    # n choices of a new prompt: whichever is prefilled first leaves it whole for the others, but
    # the request found only the server's system turn kept (the fewest any choice found)
    fresh = [{"role": "user", "content": f"Count to {uuid.uuid4().int % 1000}"}]
    three = client.chat.completions.create(model="phi4mm", messages=fresh, max_tokens=1, n=3).usage
    assert 40 < three.prompt_tokens_details.cached_tokens < three.prompt_tokens - 1


def test_models(client):
    assert [m.id for m in client.models.list().data]


def _post(url: str, body: bytes, key: str | None = API_KEY) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def _shape(body: dict) -> None:
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]


@pytest.mark.parametrize(
    "body, key, status, text",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, None, 401, "API key"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "wrong", 401, "API key"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}],
                    }
                ]
            },
            API_KEY,
            400,
            "never fetches URLs",
        ),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, API_KEY, 400, "temperature"),
        (
            {"messages": [{"role": "user", "content": [{"type": "file"}]}]},
            API_KEY,
            400,
            "Unsupported content part type 'file'; use text, image_url, input_audio, video_url.",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video_url"}]}]},
            API_KEY,
            400,
            "`messages[0].content[0].video_url` is not valid",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}]}
                ]
            },
            API_KEY,
            400,
            "never fetches URLs",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAAIGZ0eXA="}}],
                    }
                ]
            },
            API_KEY,
            400,
            "The video could not be opened",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
                    }
                ]
            },
            API_KEY,
            400,
            "could not be decoded",
        ),
        ({"messages": []}, API_KEY, 400, "non-empty"),
    ],
)
def test_error_shapes(web_server, body, key, status, text):
    code, payload = _post(web_server + "/v1/chat/completions", json.dumps(body).encode(), key)
    assert code == status
    _shape(payload)
    assert text in payload["error"]["message"]


def test_malformed_and_oversized_bodies(web_server):
    code, payload = _post(web_server + "/v1/chat/completions", b"[1, 2")
    assert code == 422
    _shape(payload)
    import http.client
    from urllib.parse import urlparse

    # a 41 MB body is refused from its headers, before the server reads (or the client sends) it
    address = urlparse(web_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest("POST", "/v1/chat/completions")
    for name, value in (
        ("Content-Type", "application/json"),
        ("Authorization", f"Bearer {API_KEY}"),
        ("Content-Length", str(41 * 2**20)),
    ):
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    _shape(json.load(response))
    connection.close()
    ok, _ = _post(
        web_server + "/v1/chat/completions",
        json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode(),
    )
    assert ok == 200  # and the server keeps serving


def test_disconnect_mid_stream_cancels_generation(web_server, client):
    import http.client
    import time
    from urllib.parse import urlparse

    def health() -> dict:
        with urllib.request.urlopen(web_server + "/health", timeout=10) as response:
            return json.load(response)

    def cancelled() -> int:
        return health()["finished"].get("cancelled", 0)

    before, tokens_before = cancelled(), health()["tokens_generated"]
    address = urlparse(web_server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    body = json.dumps({"messages": [{"role": "user", "content": [AUDIO]}], "max_tokens": 4000, "stream": True})
    connection.request(
        "POST", "/v1/chat/completions", body, {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    )
    response = connection.getresponse()
    assert response.status == 200 and response.readline().startswith(b"data: ")
    # mid-answer: once tokens flow (a client that leaves before that is let go before the engine
    # starts, and there is no generation to cancel)
    while b'"content": ""' in (line := response.readline()) or b'"content"' not in line:
        assert line, "the stream ended before any token"
    connection.sock.close()  # the client drops mid-answer
    connection.close()
    deadline = time.time() + 30
    while cancelled() == before:
        assert time.time() < deadline, "the engine never recorded the cancel"
        time.sleep(0.2)
    assert health()["tokens_generated"] - tokens_before < 2000  # stopped early, not run to 4000 tokens
    quick = client.chat.completions.create(model="phi4mm", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert quick.choices[0].finish_reason in ("stop", "length")  # the slot is free for the next request


@pytest.mark.slow  # a 72 s meeting written and transcribed per format
@pytest.mark.parametrize("response_format", ["json", "text", "srt", "verbose_json"])
def test_transcriptions(client, tmp_path, response_format):
    from tooling.inputs import write_meeting

    write_meeting(tmp_path / "note.wav", 1.2, tmp_path)  # ~72 s: several segments
    with open(tmp_path / "note.wav", "rb") as audio:
        raw = client.audio.transcriptions.with_raw_response.create(
            model="phi4mm", file=audio, response_format=response_format
        )
    assert raw.headers["x-phi4mm-adapter"] == "speech"
    body = raw.text
    if response_format == "srt":
        from tests.app.test_meeting import parse_srt

        cues = parse_srt(body)
        assert len(cues) >= 2 and cues[-1][1] == pytest.approx(72, abs=1)
    elif response_format == "verbose_json":
        payload = json.loads(body)
        assert payload["duration"] == pytest.approx(72, abs=1) and len(payload["segments"]) >= 2
    elif response_format == "json":
        assert isinstance(json.loads(body)["text"], str)


def test_transcription_of_a_broken_file_is_a_clear_400(client):
    with pytest.raises(openai.BadRequestError, match="could not be decoded|corrupt|no audio"):
        client.audio.transcriptions.create(model="phi4mm", file=("broken.wav", b"RIFF nonsense" * 10))


def test_a_conversation_with_a_short_and_a_long_voice_note_answers_every_turn(client):
    """A 2 s voice note, then a 60 s one (transformers' own encoder fails on the pair), then text:
    every turn answers, and the 60 s note costs its 750 audio tokens on top of the first turn."""
    from tooling.inputs import encode_audio, make_tone

    def voice_note(seconds):
        wav = base64.b64encode(encode_audio(make_tone(seconds), 16000, "wav")).decode()
        return {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]}

    messages, prompt_tokens = [], []
    for turn in (voice_note(2.0), voice_note(60.0), {"role": "user", "content": "And in one word?"}):
        messages.append(turn)
        completion = client.chat.completions.create(model="phi4mm", messages=messages, max_tokens=6)
        assert completion.choices[0].message.content and completion.usage.completion_tokens >= 1
        messages.append({"role": "assistant", "content": completion.choices[0].message.content})
        prompt_tokens.append(completion.usage.prompt_tokens)
    assert prompt_tokens[1] - prompt_tokens[0] > 750
