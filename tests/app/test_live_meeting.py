"""Live captions on the tiny checkpoint: microphone chunks (48 kHz stereo, a second each) close
into segments that are transcribed while recording goes on; Stop transcribes only the open
segment and summarises from the transcript; an hour holds no more than a minute; a page that
goes away leaves nothing running."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from app.live_meeting import LISTENING, MAX_BACKLOG_SECONDS, LiveMeeting
from app.meeting import MeetingOptions, MeetingSummarizer
from app.service import ConversationService
from app.web import WebApp
from core.errors import Overloaded
from core.settings import Settings
from media.audio import resample
from tooling.inputs import write_meeting

FAST = dict(asr_max_tokens=4, summary_max_tokens=12)  # random weights: keep answers short


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """A minute of espeak-ng meeting as a 48 kHz stereo microphone would send it: 1 s chunks."""
    folder = tmp_path_factory.mktemp("mic")
    write_meeting(folder / "meeting.wav", 1.0, folder)
    mono, rate = sf.read(str(folder / "meeting.wav"), dtype="float32")
    stereo = np.repeat(resample(mono, rate, 48000)[:, None], 2, axis=1)
    return [stereo[i : i + 48000] for i in range(0, len(stereo), 48000)]


class CountingService(ConversationService):
    """The real service, counting the prompts it is asked (audio ones are transcriptions)."""

    def __init__(self, engine):
        super().__init__(engine)
        self.prompts = []

    def chat(self, messages, params, **kwargs):
        self.prompts.append(messages[-1].parts)
        return super().chat(messages, params, **kwargs)


@pytest.mark.slow  # a meeting fed at a microphone's pace
def test_the_transcript_grows_while_recording_and_stop_only_summarises(engine, microphone):
    service = CountingService(engine)
    live = LiveMeeting(MeetingSummarizer(service), MeetingOptions(**FAST), max_seconds=4 * 3600)
    shown = []
    for chunk in microphone:
        live.feed(chunk, 48000)
        time.sleep(0.05)  # a microphone's pace, compressed: transcription runs beside the feeding
        shown.append(live.transcript())
    grown = list(dict.fromkeys(shown))
    assert len(grown) >= 3 and grown[0] == LISTENING  # it grew segment by segment, during the meeting
    assert grown[-1].startswith("[00:00:00 - 00:00:1") and grown[-1].endswith(LISTENING)
    transcribed_before_stop = sum(1 for parts in service.prompts if _has_audio(parts))

    result = live.finish(MeetingOptions(fmt="bullets", **FAST))
    audio_prompts = [parts for parts in service.prompts if _has_audio(parts)]
    text_prompts = [parts for parts in service.prompts if not _has_audio(parts)]
    assert len(audio_prompts) == len(result.segments) == transcribed_before_stop + 1  # only the open one
    assert len(text_prompts) == 1  # the summary, from the transcript: no audio transcribed again
    summary_prompt = text_prompts[0][0].text
    assert all(s.text in summary_prompt for s in result.segments if s.text)
    assert result.path == "live" and result.summary and result.complete
    segments = result.segments
    assert segments[0].start == 0 and segments[-1].end == pytest.approx(len(microphone) and live.seconds)
    assert all(after.start == before.end for before, after in zip(segments, segments[1:]))
    assert all(10 <= s.end - s.start <= 30 for s in segments[:-1])


def _has_audio(parts) -> bool:
    return any(type(p).__name__ == "AudioPart" for p in parts)


@pytest.mark.slow  # an hour of chunks
def test_an_hour_holds_no_more_than_a_minute(engine):
    """3,600 one-second chunks at 48 kHz: the whole hour would be 690 MB as float32."""
    live = LiveMeeting(MeetingSummarizer(ConversationService(engine)), MeetingOptions(**FAST), max_seconds=4 * 3600)
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(48000) * 1e-5).astype(np.float32)  # below the silence floor: no model work
    tracemalloc.start()
    try:
        for _ in range(3600):
            live.feed(quiet, 48000)
            time.sleep(0.001)  # the transcriber's turn: a real microphone gives it a second
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert live.seconds == pytest.approx(3600)
    assert peak < 16 * 2**20, f"an hour of live audio peaked at {peak / 2**20:.0f} MB"
    live.close()


class StalledSummarizer(MeetingSummarizer):
    """Stands in for an engine far slower than the speaker: each transcription waits for `go`."""

    def __init__(self, service):
        super().__init__(service)
        self.go = threading.Event()

    def transcribe_segment(self, *args):
        self.go.wait(60)
        return super().transcribe_segment(*args)


def test_an_engine_slower_than_the_speaker_costs_bounded_memory_and_says_what_it_skipped(engine):
    summarizer = StalledSummarizer(ConversationService(engine))
    live = LiveMeeting(summarizer, MeetingOptions(**FAST), max_seconds=4 * 3600)
    rng = np.random.default_rng(0)
    speech_level = (rng.standard_normal(48000) * 0.1).astype(np.float32)  # no pauses: 30 s segments
    for _ in range(20 * 60):
        live.feed(speech_level, 48000)
    assert live.backlog <= MAX_BACKLOG_SECONDS
    skipped = [note for note in live.notes if "fell behind" in note]
    assert len(skipped) >= (20 * 60 - MAX_BACKLOG_SECONDS - 60) // 30  # the rest of the 20 minutes
    summarizer.go.set()
    result = live.finish()
    assert sum(not s.done for s in result.segments) == len(skipped) and not result.complete
    assert any("leaves out" in note for note in result.notes)


def test_a_closed_meeting_stops_and_takes_no_more(engine, microphone):
    live = LiveMeeting(MeetingSummarizer(ConversationService(engine)), MeetingOptions(**FAST), max_seconds=3600)
    for chunk in microphone[:12]:
        live.feed(chunk, 48000)
    live.close()
    live.feed(microphone[12], 48000)
    assert live.seconds == pytest.approx(12) and live.worker._shutdown


def test_the_server_bounds_live_meetings(engine):
    web = WebApp(ConversationService(engine), Settings(queue_size=2), upload_dirs=[])
    web.live_start("a")
    web.live_start("b")
    with pytest.raises(Overloaded, match="Too many meetings"):
        web.live_start("c")
    web.live_start("a")  # the same page recording anew replaces its own meeting
    web.live_close("a")
    web.live_start("c")
    for session in ("b", "c"):
        web.live_close(session)


def test_a_chunk_after_stop_is_not_kept_and_changes_nothing(engine, tmp_path):
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    web = WebApp(ConversationService(engine), Settings(), upload_dirs=[str(uploads)])

    def chunk() -> str:  # the browser uploads each second of audio as a file of its own
        sf.write(uploads / "chunk.wav", np.zeros(16000, np.float32), 16000)
        return str(uploads / "chunk.wav")

    assert web.live_feed("page", chunk()) is None  # no meeting: nothing starts
    web.live_start("page")
    assert web.live_feed("page", chunk()) == LISTENING
    result = web.live_finish("page", "", "bullets", None, "words")
    assert result.summary == "" and "Nothing was said" in result.notes[-1]  # silence: said, not summarised
    assert web.live_feed("page", chunk()) is None
    assert list(uploads.iterdir()) == [uploads / "chunk.wav"]  # one with no meeting is not even touched
    web.live_start("page")
    web.live_feed("page", chunk())
    assert not list(uploads.iterdir())  # a chunk that was read is gone
    web.live_close("page")


def test_a_failing_summary_keeps_the_transcript(engine, microphone):
    class Failing(MeetingSummarizer):
        def summarize_transcript(self, *args):
            raise Overloaded("The server is busy.")

    live = LiveMeeting(Failing(ConversationService(engine)), MeetingOptions(**FAST), max_seconds=3600)
    for chunk in microphone[:25]:
        live.feed(chunk, 48000)
    result = live.finish()
    assert result.summary == "" and any(s.text for s in result.segments)
    assert result.notes[-1] == "The summary could not be made: The server is busy."
