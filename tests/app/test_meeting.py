"""Meeting recordings on the tiny checkpoint: 35 minutes through the chunked path (progress,
gap-free timestamps, .srt, JSON), 10 minutes through one prompt, cancellation keeping what is
finished, bounded memory, and bad files failing fast."""

from __future__ import annotations

import json
import re
import threading
import tracemalloc

import numpy as np
import pytest

from app.cli import main
from app.meeting import MeetingOptions, MeetingSummarizer
from app.service import ConversationService
from core.errors import MediaError
from engine.engine import Engine
from media.audio_stream import load_long_audio
from media.limits import SAMPLE_RATE, MediaLimits
from tooling.inputs import write_meeting

FAST = dict(asr_max_tokens=4, summary_max_tokens=12)  # random weights: keep answers short


@pytest.fixture(scope="module")
def meeting_35(tmp_path_factory):
    folder = tmp_path_factory.mktemp("meeting35")
    seconds = write_meeting(folder / "meeting.wav", 35, folder)
    return folder / "meeting.wav", seconds


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    def seconds(stamp):
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000

    cues = []
    for number, block in enumerate(text.strip().split("\n\n"), 1):
        lines = block.split("\n")
        assert lines[0] == str(number)
        start, end = re.fullmatch(r"(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})", lines[1]).groups()
        assert lines[2:], block
        cues.append((seconds(start), seconds(end), "\n".join(lines[2:])))
    return cues


@pytest.mark.slow  # 35 minutes transcribed
def test_35_minutes_take_the_chunked_path(engine, meeting_35):
    path, seconds = meeting_35
    samples = load_long_audio(path, MediaLimits(), MediaLimits().max_meeting_seconds)
    assert len(samples) == pytest.approx(seconds * SAMPLE_RATE, abs=2)
    reports = []
    result = MeetingSummarizer(ConversationService(engine)).run(
        samples, MeetingOptions(fmt="json", **FAST), progress=lambda f, stage, left: reports.append((f, stage, left))
    )

    assert result.path == "chunked" and result.complete
    fractions = [f for f, _, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # monotonic, reaching 100 %
    stages = {stage.split(" segment")[0].split(" part")[0] for _, stage, _ in reports}
    assert {"Transcribing", "Summarising", "Done"} <= stages
    assert any(left is not None and left > 0 for _, _, left in reports)  # an estimate of time left

    segments = result.segments
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(seconds, abs=1e-3)
    for before, after in zip(segments, segments[1:]):
        assert after.start == before.end  # no gaps, no overlaps
    assert all(20 <= s.end - s.start <= 36 for s in segments[:-1])  # ~30 s, cut at quiet points

    cues = parse_srt(result.transcript_srt())
    assert len(cues) == len(segments) and cues[-1][1] == pytest.approx(seconds, abs=1e-3)
    assert isinstance(json.loads(result.summary), dict)  # JSON asked -> JSON returned, repaired if need be


def test_cut_points_fall_in_pauses(meeting_35):
    from media.segmentation import quiet_cuts

    samples = load_long_audio(meeting_35[0], MediaLimits(), MediaLimits().max_meeting_seconds)
    spans = quiet_cuts(samples)
    for span in spans[1:]:
        around = samples[span.start - 160 : span.start + 160]
        assert np.abs(around).max() < 0.01  # within a pause, not inside a word


@pytest.mark.slow  # 10 minutes transcribed
def test_10_minutes_take_the_single_prompt_path(engine, tmp_path, monkeypatch):
    path = tmp_path / "meeting.wav"
    write_meeting(path, 10, tmp_path)
    samples = load_long_audio(path, MediaLimits(), MediaLimits().max_meeting_seconds)
    audio_tokens, original = [], Engine.stream

    def spy(self, request):
        ids = self.prepare(request).inputs["input_ids"][0]
        audio_tokens.append(int((ids == self.tokenizer.audio_token_id).sum()))
        return original(self, request)

    monkeypatch.setattr(Engine, "stream", spy)
    result = MeetingSummarizer(ConversationService(engine)).run(samples, MeetingOptions(**FAST))
    assert result.path == "single" and result.complete
    assert max(audio_tokens) == pytest.approx(750 * len(samples) / SAMPLE_RATE / 60, abs=2)  # the whole recording


def test_cancel_midway_returns_the_finished_segments(engine, meeting_35):
    samples = load_long_audio(meeting_35[0], MediaLimits(), MediaLimits().max_meeting_seconds)
    cancel = threading.Event()

    def progress(fraction, stage, left):
        if stage.startswith("Transcribing segment 5 "):
            cancel.set()

    result = MeetingSummarizer(ConversationService(engine)).run(samples, MeetingOptions(**FAST), progress, cancel)
    done = [s for s in result.segments if s.done]
    assert len(done) == 5 and not result.complete and result.summary == ""
    assert "Cancelled: " in result.notes[0] and "not transcribed (from 00:02:" in result.notes[0]
    assert result.segments[-1].end == pytest.approx(len(samples) / SAMPLE_RATE)  # the map of what is missing
    assert "[not transcribed]" in result.transcript_txt()


def test_memory_holds_one_16k_copy(tmp_path):
    import soundfile as sf

    rate, minutes = 44100, 10
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16") as out:
        for _ in range(minutes * 6):
            out.write(np.random.default_rng(0).standard_normal((rate * 10, 2)).astype(np.float32) * 0.1)
    tracemalloc.start()
    samples = load_long_audio(path, MediaLimits(), 3600)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_copy = samples.nbytes
    native_copy = minutes * 60 * rate * 4
    assert peak < one_copy + 40 * 2**20  # the 16 kHz array plus a few blocks
    assert peak < native_copy  # never a whole native-rate copy


@pytest.mark.parametrize("content, match", [(b"", "empty"), (b"garbage" * 100, "could not be decoded|no audio")])
def test_unreadable_files_fail_fast(tmp_path, content, match):
    path = tmp_path / "meeting.m4a"
    path.write_bytes(content)
    with pytest.raises(MediaError, match=match):
        load_long_audio(path, MediaLimits(), 3600)


@pytest.mark.slow  # a meeting summarised end to end
def test_cli_summarize(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "standup.wav"
    write_meeting(path, 2, tmp_path)
    code = main(
        [
            "summarize",
            str(path),
            "--model",
            str(tiny_checkpoint),
            "--format",
            "json",
            "--length",
            "50",
            "--transcript-out",
            str(tmp_path / "t.srt"),
            "--out",
            str(tmp_path / "summary.json"),
        ]
    )
    assert code == 0
    assert isinstance(json.loads((tmp_path / "summary.json").read_text()), dict)
    assert parse_srt((tmp_path / "t.srt").read_text())[-1][1] > 100
    (tmp_path / "bad.wav").write_bytes(b"")
    assert main(["summarize", str(tmp_path / "bad.wav"), "--model", str(tmp_path / "no-model")]) == 2
    assert "empty" in capsys.readouterr().err  # refused before any model is loaded


def test_a_failing_segment_is_noted_and_the_rest_kept(engine, tmp_path, monkeypatch):
    from core.errors import InvalidRequest

    path = tmp_path / "meeting.wav"
    write_meeting(path, 2, tmp_path)
    samples = load_long_audio(path, MediaLimits(), 3600)
    calls, original = [], Engine.stream

    def flaky(self, request):
        calls.append(1)
        if len(calls) == 2:  # the second segment's transcription
            raise InvalidRequest("simulated failure")
        return original(self, request)

    monkeypatch.setattr(Engine, "stream", flaky)
    result = MeetingSummarizer(ConversationService(engine)).run(samples, MeetingOptions(**FAST))
    assert [s.done for s in result.segments].count(False) == 1 and not result.segments[1].done
    assert "could not be transcribed: simulated failure" in result.notes[0]
    assert "leaves out 1 segment" in result.notes[-1] and result.summary  # the summary was still made


@pytest.mark.slow  # a phi4mm summarize subprocess each
@pytest.mark.parametrize(
    "minutes, stage", [(3, "Transcribing segment 2"), (0.5, "Summarising the whole recording")], ids=["asr", "summary"]
)
def test_ctrl_c_keeps_what_is_finished_and_writes_no_broken_file(tiny_checkpoint, tmp_path, minutes, stage):
    """Ctrl-C while transcribing used to end in `KeyError: 'result'`, then in a 1-byte summary file;
    while summarising, in `{}` and a note that the model gave no valid JSON. Now the transcript of
    what is finished is written, the summary file not at all, and no temporary file is left."""
    import signal
    import subprocess
    import sys
    import time

    write_meeting(tmp_path / "rec.wav", minutes, tmp_path)
    outputs = tmp_path / "out"
    outputs.mkdir()
    err = tmp_path / "err.txt"
    with err.open("w") as stderr:
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "summarize",
                str(tmp_path / "rec.wav"),
                "--model",
                str(tiny_checkpoint),
                "--max-batch",
                "1",  # one segment at a time
                "--format",
                "json",
                "--out",
                str(outputs / "s.json"),
                "--transcript-out",
                str(outputs / "t.txt"),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        deadline = time.monotonic() + 120
        while stage not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=120)
    log = err.read_text()
    assert run.returncode == 130 and "Traceback" not in log, log[-2000:]
    assert "\r" not in log and "s left)" in log  # a plain line per stage, with the time left
    assert "s.json not written: the summary was not finished" in log and "JSON" not in log
    assert out == b"" and (outputs / "t.txt").read_text().startswith("[00:00:00")
    assert [p.name for p in outputs.iterdir()] == ["t.txt"]  # no summary, no temporary file
