"""Live captions: a meeting transcribed while it is recorded, and summarised at Stop from that
transcript, without transcribing again.

Microphone chunks arrive about once a second. `media.segmentation.LiveCutter` closes 10-30 s
segments at pauses; each closed segment is transcribed in the background, in order, one at a
time, while the next one records. Only the open segment's audio and the transcript text are held,
so an hours-long meeting costs what a minute does, plus its text (and, where the engine is slower
than the speaker, at most MAX_BACKLOG_SECONDS of audio waiting for it).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from app.meeting import MeetingOptions, MeetingResult, MeetingSummarizer, Segment, Tracker
from core.errors import Phi4mmError
from media.audio import check_rate, resample, to_mono
from media.segmentation import LiveCutter
from prompts import tasks

LISTENING = "…"  # the line under the transcript while the open segment records
MAX_BACKLOG_SECONDS = 600.0  # closed audio waiting for a slow engine (16 kHz: 38 MB at most)


class LiveMeeting:
    def __init__(self, summarizer: MeetingSummarizer, options: MeetingOptions, max_seconds: float):
        self.summarizer = summarizer
        self.options = options
        self.max_seconds = max_seconds  # the recording stops growing here (the meeting cap)
        self.cutter: LiveCutter | None = None  # made at the first chunk, at the microphone's rate
        self.segments: list[Segment] = []
        self.notes: list[str] = []
        self.cancel = threading.Event()
        self.lock = threading.Lock()
        # one at a time and in order: a live meeting never takes more than one engine slot
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="phi4mm-live")
        self.pending: list[Future] = []
        self.backlog = 0.0  # seconds of closed audio not yet transcribed
        self.full = False  # the meeting reached max_seconds: later chunks are not kept
        self.last_chunk = time.monotonic()

    @property
    def seconds(self) -> float:
        return self.cutter.seconds if self.cutter else 0.0

    def feed(self, samples: np.ndarray, rate: int) -> None:
        """One chunk from the microphone, any channels. Cut at the microphone's own rate; each
        segment is resampled whole when it closes, so chunk edges leave no seams."""
        self.last_chunk = time.monotonic()
        if self.cancel.is_set() or self.full:
            return
        if self.seconds >= self.max_seconds:
            self.full = True
            self.notes.append(f"Recording stopped being kept at {tasks.clock(self.max_seconds)}, the longest meeting.")
            return
        mono = to_mono(samples)
        if self.cutter is None:
            check_rate(rate)
            self.cutter = LiveCutter(rate)
        elif rate != self.cutter.rate:  # the browser changed its microphone mid-meeting
            mono = resample(mono, rate, self.cutter.rate)
        for start, end, audio in self.cutter.feed(mono):
            self._transcribe(start, end, audio)

    def transcript(self) -> str:
        """Every finished segment with its times, then a mark while more is being recorded."""
        with self.lock:
            done = [(s.start, s.end, s.text) for s in self.segments if s.done and s.text]
        return tasks.timed_transcript(done) + ("\n" if done else "") + LISTENING

    def finish(self, options: MeetingOptions | None = None) -> MeetingResult:
        """Stop: the open segment is transcribed, then the summary is made from the transcript."""
        options = options or self.options
        if self.cutter is not None:
            for start, end, audio in self.cutter.finish():
                self._transcribe(start, end, audio, last=True)  # recording has ended: it waits its turn
        for future in list(self.pending):
            future.result()
        self.worker.shutdown()
        duration, segments = self.seconds, self.segments
        if not any(s.text for s in segments):
            note = "Nothing was said that could be transcribed, so there is no summary."
            return MeetingResult("live", duration, segments, "", options.fmt, [*self.notes, note])
        tracker = Tracker(duration, lambda fraction, stage, left: None)
        try:
            summary = self.summarizer.summarize_transcript(segments, options, tracker, self.cancel)
        except Phi4mmError as err:  # the transcript is kept, whatever happens to the summary
            note = f"The summary could not be made: {err}"
            return MeetingResult("live", duration, segments, "", options.fmt, [*self.notes, note])
        return self.summarizer.result("live", duration, segments, summary, self.notes, options, self.cancel)

    def close(self) -> None:
        """The page went away: stop at once, keep nothing running."""
        self.cancel.set()
        self.worker.shutdown(wait=False, cancel_futures=True)

    def _transcribe(self, start: float, end: float, audio: np.ndarray, last: bool = False) -> None:
        """Queue a closed segment. Where the engine cannot keep up with the speaker, the audio that
        waits is capped (MAX_BACKLOG_SECONDS); a segment past the cap is noted, never held."""
        with self.lock:
            index = len(self.segments)
            self.segments.append(Segment(start, end, "", done=False))
            if self.backlog + (end - start) > MAX_BACKLOG_SECONDS and not last:
                self.notes.append(
                    f"Segment {tasks.clock(start)}-{tasks.clock(end)} was not transcribed: "
                    "the server fell behind the recording."
                )
                return
            self.backlog += end - start
        samples = resample(audio, self.cutter.rate).copy()  # 16 kHz, its own memory: the open buffer goes

        def run():
            try:
                segment, note = self.summarizer.transcribe_segment(samples, start, end, self.options, self.cancel)
                with self.lock:
                    self.segments[index] = segment
                    self.notes.extend([note] if note else [])
            finally:
                with self.lock:
                    self.backlog -= end - start

        self.pending = [f for f in self.pending if not f.done()] + [self.worker.submit(run)]
