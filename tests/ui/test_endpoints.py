"""Every public endpoint of the browser app, called with the official gradio_client against a
real server: chat with an image, audio and a video; photo by voice; transcribe; summarise."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from tests.conftest import API_KEY
from tooling.inputs import write_video, write_video_with_speech

pytestmark = pytest.mark.slow  # every Gradio endpoint through gradio_client, real generation

EXAMPLES = Path(__file__).resolve().parents[2] / "ui" / "examples"
SETTINGS = ("", 24, 0, 1, 36, 4)  # system prompt, max tokens, temperature, top-p, crops, video frames


@pytest.fixture
def client(web_server):
    # a fresh session (empty history); the server has an API key, which locks the app's API too
    return Client(web_server + "/", verbose=False, headers={"Authorization": f"Bearer {API_KEY}"})


def test_endpoints_are_public(client):
    assert set(client.view_api(return_format="dict")["named_endpoints"]) >= {
        "/chat",
        "/photo_by_voice",
        "/transcribe",
        "/summarize",
    }


@pytest.mark.parametrize(
    "make_file, adapter",
    [
        (lambda tmp: EXAMPLES / "sunset.png", "vision"),
        (lambda tmp: EXAMPLES / "question.wav", "speech"),
        (lambda tmp: (write_video(tmp / "clip.mp4", seconds=2, fps=10), tmp / "clip.mp4")[1], "vision"),
        (
            lambda tmp: (write_video_with_speech(tmp / "spoken.mp4", "Hello there.", tmp), tmp / "spoken.mp4")[1],
            "vision",
        ),
    ],
)
def test_chat_with_media(client, tmp_path, make_file, adapter):
    answer, metrics = client.predict(
        {"text": "What is this?", "files": [handle_file(str(make_file(tmp_path)))]}, *SETTINGS, api_name="/chat"
    )
    assert metrics.startswith(f"{adapter} adapter · first token") and "tokens/s" in metrics
    assert answer and "adapter" not in answer and "<sub>" not in answer  # the metrics line comes apart


def test_a_long_video_is_answered_from_its_frames_and_the_line_says_its_sound_was_left_out(client, tmp_path):
    """Past the chat-audio cap (180 s by default) the sound is not decoded at all."""
    import numpy as np

    write_video(tmp_path / "long.mp4", seconds=200, fps=1, sound=np.full(200 * 8000, 0.1, np.float32), rate=8000)
    answer, metrics = client.predict(
        {"text": "What happens?", "files": [handle_file(str(tmp_path / "long.mp4"))]}, *SETTINGS, api_name="/chat"
    )
    assert answer
    assert metrics.startswith(
        "The video's sound was left out: the video is 3.3 minutes long, and sound is taken with videos up to "
        "3.0 minutes. · vision adapter · first token"
    )


def test_photo_by_voice(client):
    answer = client.predict(
        handle_file(str(EXAMPLES / "sunset.png")),
        handle_file(str(EXAMPLES / "question.wav")),
        "",
        api_name="/photo_by_voice",
    )
    assert "vision adapter" in answer
    typed = client.predict(
        handle_file(str(EXAMPLES / "sunset.png")), None, "What colour is the sky?", api_name="/photo_by_voice"
    )
    assert "vision adapter" in typed
    with pytest.raises(AppError, match="^Take or upload a photo first.$"):  # an error, not an answer
        client.predict(None, None, "hi", api_name="/photo_by_voice")


def test_every_endpoint_takes_only_its_required_input(client):
    """The rest default to the page's defaults (`/chat` required `system`, `/summarize` `instruction`)."""
    wav = handle_file(str(EXAMPLES / "question.wav"))
    assert "adapter · first token" in client.predict({"text": "Hi", "files": []}, api_name="/chat")[1]
    assert "vision adapter" in client.predict(
        handle_file(str(EXAMPLES / "sunset.png")), wav, api_name="/photo_by_voice"
    )
    assert client.predict(wav, api_name="/transcribe")[0]
    assert client.predict(wav, api_name="/summarize")[0]


def test_every_output_is_named(client):
    endpoints = client.view_api(return_format="dict")["named_endpoints"]
    labels = [
        r["label"]
        for name in ("/chat", "/photo_by_voice", "/transcribe", "/summarize")
        for r in endpoints[name]["returns"]
    ]
    assert all(label and not label.startswith("value_") for label in labels), labels


def test_a_failed_chat_reaches_the_client_as_an_error(client, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a picture" * 100)
    with pytest.raises(AppError, match="broken.png: The image could not be decoded"):
        client.predict(
            {"text": "What is this?", "files": [handle_file(str(tmp_path / "broken.png"))]}, *SETTINGS, api_name="/chat"
        )


def test_transcribe_and_translate(client):
    transcript, translation, download = client.predict(
        handle_file(str(EXAMPLES / "question.wav")), "Translate", "French", True, api_name="/transcribe"
    )
    text = Path(download).read_text()
    assert download.endswith("translation.txt") and transcript in text and translation in text
    assert translation  # no separate translation is said, never a silently empty box
    transcript, translation, _ = client.predict(
        handle_file(str(EXAMPLES / "question.wav")), "Transcribe", "English", False, api_name="/transcribe"
    )
    assert translation == ""


def test_summarize_at_the_pages_defaults(client):
    """Length 0 is the page's default and means no limit (a minimum of 1 made it an error)."""
    transcript, summary, files = client.predict(
        handle_file(str(EXAMPLES / "question.wav")), "bullets", "", 0, "words", api_name="/summarize"
    )
    assert transcript and len(files) == 3


def test_summarize(client):
    transcript, summary, files = client.predict(
        handle_file(str(EXAMPLES / "question.wav")), "json", "", None, "words", api_name="/summarize"
    )
    assert sorted(Path(f).name for f in files) == ["summary.json", "transcript.srt", "transcript.txt"]
    import json

    summary_file = next(f for f in files if f.endswith(".json"))
    assert isinstance(json.loads(Path(summary_file).read_text()), dict)  # valid JSON, repaired if need be


def test_meeting_stop_keeps_what_is_done(client, tmp_path):
    import time

    from tooling.inputs import write_meeting

    write_meeting(tmp_path / "long.wav", 12, tmp_path)
    job = client.submit(handle_file(str(tmp_path / "long.wav")), "bullets", "", None, "words", api_name="/summarize")
    deadline = time.monotonic() + 60  # stop once it is transcribing (a fixed sleep raced a fast machine)
    while time.monotonic() < deadline and not any(
        "Transcribing" in (unit.desc or "") for unit in job.status().progress_data or []
    ):
        time.sleep(0.02)
    client.predict(api_name="/stop_meeting")  # same client, same browser session
    transcript, summary, files = job.result(timeout=120)
    assert "Cancelled: " in summary and "not transcribed" in summary
    assert "[not transcribed]" in transcript and transcript.startswith("[00:00:00 - ")
    assert len(files) == 3


@pytest.mark.parametrize("task", ["Describe the sounds", "Describe the music", "Answer the spoken question"])
def test_audio_understanding_answers_in_the_first_box(client, task):
    answer, translation, download = client.predict(
        handle_file(str(EXAMPLES / "question.wav")), task, api_name="/transcribe"
    )
    assert answer and translation == "" and download
    assert (
        Path(download).name
        == {  # named for what it holds: not a transcript
            "Describe the sounds": "sounds-answer.txt",
            "Describe the music": "music-answer.txt",
            "Answer the spoken question": "question-answer.txt",
        }[task]
    )


def test_photo_by_voice_needs_no_audio(client):
    """The page asks with a typed question alone; so may a client, without naming the audio."""
    parameters = client.view_api(return_format="dict")["named_endpoints"]["/photo_by_voice"]["parameters"]
    assert [p["parameter_name"] for p in parameters if not p["parameter_has_default"]] == ["image"]
    answer = client.predict(
        handle_file(str(EXAMPLES / "sunset.png")), question="What colour is the sky?", api_name="/photo_by_voice"
    )
    assert "vision adapter" in answer


@pytest.mark.parametrize("text", ["", "   "])
def test_chat_refuses_an_empty_message(client, text):
    with pytest.raises(AppError, match="^Type a message or attach a file first.$"):
        client.predict({"text": text, "files": []}, *SETTINGS, api_name="/chat")


def test_a_user_error_is_one_line_in_the_server_log(client, web_server_log, tmp_path):
    """A bad file is the user's error, not a bug: one line in the console, not Gradio's traceback."""
    log = web_server_log
    before = len(log.read_text())
    (tmp_path / "broken.wav").write_bytes(b"not a recording" * 100)
    with pytest.raises(AppError, match="broken.wav"):
        client.predict(handle_file(str(tmp_path / "broken.wav")), api_name="/transcribe")
    added = log.read_text()[before:]
    assert "Traceback" not in added, added
    assert [line for line in added.splitlines() if "broken.wav" in line] == [
        next(line for line in added.splitlines() if line.startswith("WARNING ui.page_text: refused"))
    ]


def test_a_chat_with_a_short_and_a_long_voice_note_answers_every_turn(client, tmp_path):
    """The browser chat keeps both notes in its history: a 2 s one, a 60 s one, then a typed turn."""
    from tooling.inputs import encode_audio, make_tone

    for seconds in (2, 60):
        (tmp_path / f"{seconds}s.wav").write_bytes(encode_audio(make_tone(float(seconds)), 16000, "wav"))
    turns = [
        {"text": "", "files": [handle_file(str(tmp_path / "2s.wav"))]},
        {"text": "And this one?", "files": [handle_file(str(tmp_path / "60s.wav"))]},
        {"text": "Say it in one word.", "files": []},
    ]
    for turn in turns:
        answer, metrics = client.predict(turn, *SETTINGS, api_name="/chat")
        assert answer and metrics.startswith("speech adapter · first token"), metrics
