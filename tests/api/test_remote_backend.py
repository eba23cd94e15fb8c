"""The `openai` backend: a second `phi4mm serve --backend openai` chained to the first (the shared
test server) serves chat and transcription end to end; the CLI uses the same backend; an
unreachable remote is a clear error."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import openai
import pytest

from core.errors import ModelUnavailable
from engine.remote import RemoteEngine
from engine.request import GenerationRequest
from media.parts import Message, TextPart
from tests.api.test_metrics import scrape
from tests.api.test_openai_client import AUDIO, IMAGE
from tests.conftest import API_KEY
from tooling.server import PHI4MM, free_port, running_server

pytestmark = pytest.mark.slow  # a second server in front of the shared one


@pytest.fixture(scope="module")
def chained(web_server, tiny_checkpoint, tmp_path_factory):
    """(front server URL, back server URL): the front has no model of its own."""
    with running_server(
        tiny_checkpoint,
        tmp_path_factory.mktemp("front") / "serve.log",
        backend="openai",
        base_url=web_server + "/v1",
        remote_api_key=API_KEY,
    ) as front:
        yield front, web_server


@pytest.mark.parametrize(
    "content, adapter",
    [
        ("Hello!", "base"),
        ([IMAGE, {"type": "text", "text": "What is this?"}], "vision"),
        ([AUDIO], "speech"),
    ],
)
def test_chained_chat(chained, content, adapter):
    front, back = chained
    before = scrape(back)
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="phi4mm", messages=[{"role": "user", "content": content}], max_tokens=6
    )
    assert raw.headers["x-phi4mm-adapter"] == adapter
    completion = raw.parse()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.completion_tokens >= 1 and completion.usage.prompt_tokens > 5  # the back's usage
    key = ("phi4mm_adapter_requests_total", (("adapter", adapter),))
    assert scrape(back).get(key, 0) == before.get(key, 0) + 1  # the back server did the work


def test_chained_streaming_and_health(chained):
    front, _ = chained
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0, timeout=120)
    chunks = list(
        client.chat.completions.create(
            model="phi4mm",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    chunks, usage = chunks[:-1], chunks[-1]  # usage comes last, in a chunk of its own (issue 17)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length") and usage.usage.completion_tokens >= 1
    with urllib.request.urlopen(front + "/health", timeout=10) as response:
        health = json.load(response)
    assert health["backend"] == "openai" and health["device"].startswith("remote http://127.0.0.1")


def test_chained_transcription(chained, tmp_path):
    from tooling.inputs import write_meeting

    front, _ = chained
    write_meeting(tmp_path / "note.wav", 0.6, tmp_path)  # ~36 s: two segments
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0, timeout=120)
    with open(tmp_path / "note.wav", "rb") as audio:
        payload = client.audio.transcriptions.create(model="phi4mm", file=audio, response_format="verbose_json")
    assert payload.duration == pytest.approx(36, abs=1) and len(payload.segments) >= 2
    # streamed: a remote engine decodes in its consumer's thread, which prepares each segment too
    with open(tmp_path / "note.wav", "rb") as audio:
        events = list(client.audio.transcriptions.create(model="phi4mm", file=audio, stream=True))
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]) == events[-1].text
    assert events[-1].text.split() == " ".join(s.text for s in payload.segments).split()


def test_cli_ask_through_the_remote_backend(web_server):
    result = subprocess.run(
        [
            PHI4MM,
            "ask",
            "--backend",
            "openai",
            "--base-url",
            web_server + "/v1",
            "--remote-api-key",
            API_KEY,
            "--max-new-tokens",
            "4",
            "--verbose",
            "Hello",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "adapter=base" in result.stderr and "completion_tokens=" in result.stderr


def test_unreachable_or_refusing_remote_is_a_clear_error(web_server):
    request = GenerationRequest([Message("user", [TextPart("hi")])])
    with pytest.raises(ModelUnavailable, match="cannot be reached"):
        RemoteEngine(f"http://127.0.0.1:{free_port()}/v1", None, "phi4mm", timeout_s=5).stream(request)
    with pytest.raises(ModelUnavailable, match="refused our key"):
        RemoteEngine(web_server + "/v1", "wrong-key", "phi4mm", timeout_s=30).stream(request)


def test_chained_tools_and_schema_pass_through(chained):
    """The front sends tools and the schema on as OpenAI fields; the back (a phi4mm server)
    constrains and parses them; its tool calls come back through the front as tool_calls."""
    from tests.api.test_openai_parity import HI, SCHEMA, forced_call

    front, _ = chained
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0, timeout=120)
    called = forced_call(client)
    assert called.choices[0].finish_reason == "tool_calls"
    assert called.choices[0].message.tool_calls[0].function.name in ("get_weather", "get_time")
    shaped = client.chat.completions.create(
        model="phi4mm",
        messages=HI,
        max_tokens=120,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}},
    )
    assert set(json.loads(shaped.choices[0].message.content)) == {"answer", "sure", "tags"}


def test_a_video_goes_out_as_its_frames_its_sound_and_its_note(tmp_path):
    """The remote server gets what the local engine would: each frame an image, the soundtrack a
    16 kHz WAV, then the line with the frames' times."""
    import base64
    import io

    import soundfile as sf

    from engine.prompt_items import video_note
    from engine.remote import openai_messages
    from media.video import load_video
    from tooling.inputs import write_video_with_speech

    write_video_with_speech(tmp_path / "spoken.mp4", "Hello there.", tmp_path)
    video = load_video(tmp_path / "spoken.mp4", frames=3)
    (message,) = openai_messages(GenerationRequest([Message("user", [video, TextPart("What is said?")])]))
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["image_url"] * 3 + ["input_audio", "text", "text"]
    sound, rate = sf.read(io.BytesIO(base64.b64decode(message["content"][3]["input_audio"]["data"])))
    assert rate == 16000 and len(sound) == len(video.soundtrack)
    assert message["content"][4]["text"] == video_note(video) + "\n" and "soundtrack" in video_note(video)


def test_chained_tools_with_a_format_as_openai_combines_them(chained):
    """The front passes on the decision the local path makes (app/chat_request.py answer_shape): a
    forced call until the tool has answered, then the format (it kept forcing the call); tools on
    auto with the format: a call or the format (it sent no format with tools, so free text came)."""
    from tests.api.test_openai_combinations import FORMAT, HI, SHIP, Ship

    front, _ = chained
    client = openai.OpenAI(base_url=front + "/v1", api_key="unused", max_retries=0, timeout=120)
    forced = {"tools": [SHIP], "tool_choice": "required", "parallel_tool_calls": False, "response_format": FORMAT}
    first = client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=200, **forced).choices[0]
    call = first.message.tool_calls[0]
    Ship.model_validate_json(call.function.arguments)
    result = {"role": "tool", "tool_call_id": call.id, "content": "shipped"}
    history = [*HI, first.message.model_dump(exclude_none=True), result]
    final = client.chat.completions.create(model="phi4mm", messages=history, max_tokens=20, **forced).choices[0]
    assert final.message.tool_calls is None and set(json.loads(final.message.content)) == {"ok"}
    auto = {"tools": [SHIP], "parallel_tool_calls": False, "response_format": FORMAT}
    for seed in range(3):
        answer = client.chat.completions.create(
            model="phi4mm", messages=HI, max_tokens=200, temperature=1, seed=seed, **auto
        ).choices[0]
        if answer.message.tool_calls:
            Ship.model_validate_json(answer.message.tool_calls[0].function.arguments)
        else:
            assert set(json.loads(answer.message.content)) == {"ok"}  # never free text


def test_a_chained_transcript_left_while_a_segment_is_prepared_stops_the_back(chained):
    """The client leaves right after the 200, while the front asks the back for the first segment
    (the remote engine opens its stream on the call): the back's generation is cancelled, not run
    to its token budget for nobody (before: the unstarted answer holding the remote stream was
    dropped without being closed, and the back wrote the whole segment)."""
    import httpx

    from tests.api.test_dropped_clients import health, settles
    from tooling.inputs import encode_audio, make_tone

    front, back = chained
    before = health(back)["finished"]
    recording = encode_audio(make_tone(40.0), 16000, "wav")
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST", front + "/v1/audio/transcriptions", files={"file": ("a.wav", recording)}, data={"stream": "true"}
        ) as response,
    ):
        assert response.status_code == 200  # and the client hangs up at once
    deadline = time.monotonic() + 60  # until the back has ended that generation, one way or the other
    while (after := health(back)["finished"]) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert settles(back) and settles(front)
    assert after.get("length", 0) == before.get("length", 0)
    assert after.get("cancelled", 0) == before.get("cancelled", 0) + 1
