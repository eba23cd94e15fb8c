"""The `phi4mm` command line: the installed console script end to end, `ask` streaming with
its --verbose metrics line, and the missing-weights message."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import soundfile as sf

from app.cli import main
from prompts import tasks
from tooling.inputs import make_photo, make_tone

METRICS = re.compile(
    r"^adapter=(base|vision|speech) prompt_tokens=(\d+) completion_tokens=(\d+) ttft_ms=([\d.]+) tok_s=([\d.]+)$"
)
PHI4MM = os.path.join(os.path.dirname(sys.executable), "phi4mm")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    make_photo().save(folder / "photo.jpg")
    sf.write(folder / "tone.wav", make_tone(seconds=1.5, rate=22050), 22050)
    return folder


@pytest.mark.slow  # two console-script subprocesses
def test_console_script_writes_a_checkpoint_and_answers(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        [PHI4MM, "tiny-checkpoint", str(tmp_path / "ckpt"), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "ckpt" / "vision-lora" / "adapter_model.safetensors").is_file()
    run = subprocess.run(
        [PHI4MM, "ask", "--model", str(tmp_path / "ckpt"), "--max-new-tokens", "5", "--verbose", "Hi"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("\n")  # the answer (may be only hidden control tokens on a random model)
    assert len(run.stderr.splitlines()) == 1, run.stderr  # --verbose: the metrics line alone, no load log
    match = METRICS.match(run.stderr.strip())
    assert match and match.group(1) == "base" and match.group(3) == "5"


@pytest.mark.parametrize(
    "flags, adapter",
    [
        ([], "base"),
        (["--image", "photo.jpg"], "vision"),
        (["--audio", "tone.wav"], "speech"),
        (["--image", "photo.jpg", "--image", "photo.jpg", "--audio", "tone.wav"], "vision"),
    ],
)
def test_ask_streams_and_reports_metrics(tiny_checkpoint, media, capsys, flags, adapter):
    flags = [str(media / f) if f.endswith((".jpg", ".wav")) else f for f in flags]
    code = main(["ask", "--model", str(tiny_checkpoint), "--max-new-tokens", "7", "--verbose", *flags, "What is this?"])
    out, err = capsys.readouterr()
    assert code == 0
    match = METRICS.match(err.strip().splitlines()[-1])
    assert match, err
    assert match.group(1) == adapter and match.group(3) == "7" and int(match.group(2)) > 5
    assert out.endswith("\n") and "adapter=" not in out


@pytest.mark.parametrize("decode", ["dynamic", "static", pytest.param("compiled", marks=pytest.mark.slow)])
def test_ask_without_verbose_prints_only_the_answer(
    tiny_checkpoint, engine, capsys, decode, compile_folder, monkeypatch
):
    """Every decode path gives the same answer as the session's (dynamic, unbatched) engine."""
    from app.service import ConversationService
    from engine.request import SamplingParams
    from media.parts import Message, TextPart

    monkeypatch.setenv("PHI4MM_COMPILE_CACHE", str(compile_folder))  # the session's, not ~/.cache

    assert (
        main(
            [
                "ask",
                "--model",
                str(tiny_checkpoint),
                "--max-new-tokens",
                "40",
                "--decode",
                decode,
                "Hello, how are you?",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    expected, _ = ConversationService(engine).answer(
        [Message("user", [TextPart("Hello, how are you?")])], SamplingParams(max_new_tokens=40)
    )
    assert out == expected + "\n" and "adapter=" not in err


def test_bad_parameter_is_a_clear_error(tiny_checkpoint, capsys):
    assert main(["ask", "--model", str(tiny_checkpoint), "--temperature", "9", "Hi"]) == 2
    assert "`temperature` must be between 0 and 2" in capsys.readouterr().err


@pytest.mark.slow  # a console-script subprocess
def test_missing_weights_message_without_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([PHI4MM, "ask", "hello"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert "microsoft/Phi-4-multimodal-instruct" in run.stderr
    assert "hf download microsoft/Phi-4-multimodal-instruct --revision refs/pr/70" in run.stderr
    assert "--model /path/to/Phi-4-multimodal-instruct" in run.stderr
    assert "phi4mm tiny-checkpoint" in run.stderr


def test_missing_local_folder_message(tmp_path, capsys):
    assert main(["ask", "--model", str(tmp_path / "nowhere"), "hello"]) == 2
    err = capsys.readouterr().err
    assert "There is no folder" in err and "phi4mm tiny-checkpoint" in err
    assert "hf download" not in err  # a path is not a hub id
    assert main(["ask", "--model", str(tmp_path), "hello"]) == 2  # a folder, but no checkpoint in it
    assert "no checkpoint in that folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory):
    from tooling.inputs import speak

    path = tmp_path_factory.mktemp("speech") / "hello.wav"
    speak("Hello, this is a test of the transcription command.", path)
    return path


def test_transcribe_prints_the_transcript(tiny_checkpoint, speech_wav, capsys):
    assert main(["transcribe", str(speech_wav), "--model", str(tiny_checkpoint), "--verbose"]) == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n") and "Transcript:" not in out
    match = METRICS.match(err.strip().splitlines()[-1])
    assert match and match.group(1) == "speech"


def test_transcribe_with_translation_and_cot(tiny_checkpoint, speech_wav, capsys):
    assert main(["transcribe", str(speech_wav), "--model", str(tiny_checkpoint), "--translate-to", "fr", "--cot"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Transcript:\n") and "\nTranslation (French):" in out


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--translate-to", "Klingon"], "Unsupported speech language 'Klingon'"),
        (["--cot"], "--cot needs --translate-to"),
    ],
)
def test_transcribe_flag_errors(tiny_checkpoint, speech_wav, capsys, flags, message):
    assert main(["transcribe", str(speech_wav), "--model", str(tiny_checkpoint), *flags]) == 2
    assert message in capsys.readouterr().err


def test_transcribe_refuses_bad_audio_clearly(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    assert main(["transcribe", str(tmp_path / "broken.wav"), "--model", str(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("phi4mm: broken.wav: The audio") and "Traceback" not in err


def test_ask_about_a_video(tiny_checkpoint, tmp_path, capsys):
    from tooling.inputs import write_video

    write_video(tmp_path / "clip.mp4", seconds=3, fps=10)
    code = main(
        [
            "ask",
            "--model",
            str(tiny_checkpoint),
            "--video",
            str(tmp_path / "clip.mp4"),
            "--video-frames",
            "4",
            "--max-new-tokens",
            "3",
            "--verbose",
            "What happens?",
        ]
    )
    assert code == 0
    match = METRICS.match(capsys.readouterr().err.strip().splitlines()[-1])
    assert match.group(1) == "vision" and int(match.group(2)) > 4 * 200  # four frames' image tokens


def test_ask_about_a_video_hears_its_sound_or_says_it_was_left_out(tiny_checkpoint, tmp_path, capsys, monkeypatch):
    from tooling.inputs import write_video_with_speech

    write_video_with_speech(tmp_path / "spoken.mp4", "Look at the red ball.", tmp_path)
    ask = ["ask", "--model", str(tiny_checkpoint), "--video", str(tmp_path / "spoken.mp4"), "--video-frames", "2"]
    ask += ["--max-new-tokens", "2", "--verbose", "What is said?"]

    def run():
        assert main(ask) == 0
        err = capsys.readouterr().err.strip()
        return err, int(METRICS.match(err.splitlines()[-1]).group(2))

    heard_err, heard = run()
    monkeypatch.setenv("PHI4MM_MAX_CHAT_AUDIO_SECONDS", "1")
    left_out_err, left_out = run()
    assert "left out" not in heard_err
    assert "phi4mm: The video's sound was left out: the video is 2 seconds long" in left_out_err
    assert heard - left_out >= 25  # about 2 s of speech at 12.5 audio tokens a second


def test_transcribe_several_files_together_reports_rtfx(tiny_checkpoint, speech_wav, tmp_path, capsys):
    from tooling.inputs import write_meeting

    write_meeting(tmp_path / "long.wav", 0.6, tmp_path)  # ~36 s: more than one segment
    assert (
        main(["transcribe", str(speech_wav), str(tmp_path / "long.wav"), "--model", str(tiny_checkpoint), "--verbose"])
        == 0
    )
    out, err = capsys.readouterr()
    assert out.count("== ") == 2 and out.index(str(speech_wav)) < out.index("long.wav")
    match = re.search(r"files=2 audio_s=(\d+\.\d) wall_s=\d+\.\d+ rtfx=\d+\.\d", err)
    assert match and 38 < float(match.group(1)) < 42  # 36 s + the ~4 s spoken sentence


def test_bare_ask_is_a_usage_error_before_any_model_loads(tmp_path, capsys):
    """It used to generate 1,024 tokens from an empty prompt."""
    assert main(["ask", "--model", str(tmp_path / "no-model")]) == 2
    assert "ask needs a question, media" in capsys.readouterr().err


def test_help_gives_every_flag_its_default():
    from app.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    # flags with nothing to default to: the inputs themselves, keys, switches
    no_default = {
        "-h",
        "--image",
        "--audio",
        "--video",
        "--system",
        "--stop",
        "--base-url",
        "--remote-api-key",
        "--verbose",
        "--revision",
        "--instruction",
        "--transcript-out",
        "--out",
        "--translate-to",
        "--cot",
        "--length",
        "--limit",
        "--max-inflight",
    }
    for name in ("ask", "chat", "download", "serve", "transcribe", "summarize"):
        help_text = commands[name].format_help()
        for action in commands[name]._actions:
            flags = set(action.option_strings)
            if flags and not flags & no_default:
                text = commands[name]._get_formatter()._format_action(action)
                assert "default" in text, (name, action.option_strings)
        assert "default" in help_text


def test_one_default_for_max_new_tokens():
    from core.settings import DEFAULTS, Settings

    assert Settings().max_new_tokens == DEFAULTS.max_new_tokens == 1024
    assert f"(default {DEFAULTS.max_new_tokens})" in subprocess.run(
        [PHI4MM, "ask", "--help"], capture_output=True, text=True, timeout=60
    ).stdout.replace("\n", " ").replace("  ", "")


@pytest.mark.slow  # a console-script subprocess each
@pytest.mark.parametrize("command", [["ask", "hi"], ["serve", "--port", "0"]])
def test_an_unreachable_hub_fails_fast_with_one_message(tmp_path, command):
    """No --model, not cached, no network: it took 171 s (ask) and 153 s (serve) and printed 80 to
    140 lines of retry warnings. The hub here is a closed port on loopback."""
    import socket
    import time

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    run = subprocess.run([PHI4MM, *command], capture_output=True, text=True, timeout=120, env=env)
    assert time.monotonic() - started < 30 and run.returncode == 2
    assert "cannot be reached" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.splitlines()) <= 6, run.stderr


@pytest.mark.parametrize("task", ["sounds", "music", "question"])
def test_ask_with_an_audio_task(tiny_checkpoint, media, capsys, task, monkeypatch):
    from app.service import ConversationService

    asked = []
    chat = ConversationService.chat
    monkeypatch.setattr(
        ConversationService,
        "chat",
        lambda self, messages, *a, **k: asked.append(messages) or chat(self, messages, *a, **k),
    )
    code = main(
        [
            "ask",
            "--model",
            str(tiny_checkpoint),
            "--max-new-tokens",
            "4",
            "--audio",
            str(media / "tone.wav"),
            "--task",
            task,
        ]
    )
    assert code == 0 and capsys.readouterr().out.strip()
    texts = [p.text for p in asked[0][-1].parts if hasattr(p, "text")]
    assert texts == ([tasks.AUDIO_TASKS[task][1]] if task != "question" else [])  # the spoken question: audio alone


def test_an_audio_task_needs_audio_and_no_question(tiny_checkpoint, media, capsys):
    assert main(["ask", "--model", str(tiny_checkpoint), "--task", "music", "Hi"]) == 2
    assert "--task takes --audio" in capsys.readouterr().err
