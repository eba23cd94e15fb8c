"""Meeting recordings: transcript and summary, 30 minutes natively and hours by map-reduce.

- The recording is cut into ~30 s segments at quiet points (`media.segmentation`), each
  transcribed with the ASR prompt: the transcript keeps every segment's timestamps.
- Up to the native limit (30 min, what the model was trained on), the summary is one prompt:
  the whole recording plus the user's instruction. Past it, ~10-minute stretches of the
  transcript are summarised, and those partial summaries are combined under the instruction.
- Progress reports stage, fraction and time left; a cancel or a failed segment keeps everything
  finished so far and says exactly what is missing. A JSON summary is validated, repaired or
  re-asked, and never returned broken.
"""

from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from app.service import ConversationService, collect
from core.errors import Phi4mmError
from engine.grammar import GrammarSpec
from engine.request import SamplingParams
from media.audio_stream import SILENCE_PEAK
from media.limits import SAMPLE_RATE
from media.parts import AudioPart, Message, TextPart
from media.segmentation import quiet_cuts
from prompts import tasks

Progress = Callable[[float, str, "float | None"], None]  # (fraction done, stage, seconds left)


@dataclass
class MeetingOptions:
    instruction: str | None = None
    fmt: str = "bullets"
    length: int | None = None
    unit: str = "words"
    native_limit_seconds: float = 1800.0  # one prompt up to here (the report trained on 30 min)
    segment_seconds: float = 30.0  # transcript segments (the audio encoder attends within 40 s)
    window_seconds: float = 600.0  # transcript stretch per partial summary
    asr_max_tokens: int | None = None  # None: enough for fast speech
    asr_prompt: str = tasks.ASR  # what each segment is asked (tasks.asr_with_vocabulary adds a hint)
    asr_temperature: float = 0.0  # greedy, the model's default
    summary_max_tokens: int = 768


@dataclass
class Segment:
    start: float
    end: float
    text: str
    done: bool = True  # False: not transcribed (failed or cancelled)


@dataclass
class MeetingResult:
    path: str  # "single" (one prompt) or "chunked" (map-reduce)
    duration: float
    segments: list[Segment]
    summary: str
    fmt: str
    notes: list[str] = field(default_factory=list)  # what is missing, and why
    remarks: list[str] = field(default_factory=list)  # other things worth knowing (e.g. JSON repaired)

    @property
    def complete(self) -> bool:
        return not self.notes

    def transcript_txt(self) -> str:
        lines = [
            f"[{tasks.clock(s.start)} - {tasks.clock(s.end)}] {s.text if s.done else '[not transcribed]'}"
            for s in self.segments
        ]
        return "\n".join(lines + [f"\nNote: {n}" for n in self.notes]) + "\n"

    def transcript_srt(self) -> str:
        def stamp(t: float) -> str:
            ms = int(round(t * 1000))
            return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

        cues = [
            f"{i}\n{stamp(s.start)} --> {stamp(s.end)}\n{(s.text if s.done else '[not transcribed]') or '…'}\n"
            for i, s in enumerate(self.segments, 1)
        ]
        return "\n".join(cues)

    @property
    def summary_suffix(self) -> str:
        return "json" if self.fmt == "json" else "md"


class Tracker:
    """Weighted progress with an estimate of time left."""

    def __init__(self, total: float, report: Progress):
        self.total, self.done, self.report, self.started = max(total, 1e-9), 0.0, report, time.monotonic()

    def advance(self, amount: float, stage: str) -> None:
        self.done = min(self.total, self.done + amount)
        fraction = self.done / self.total
        elapsed = time.monotonic() - self.started
        self.report(fraction, stage, elapsed / fraction * (1 - fraction) if fraction > 0 else None)


# The form prompts/tasks.py asks a JSON summary for.
SUMMARY_GRAMMAR = GrammarSpec.json_schema(
    {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "summary": {"type": "string"},
            "key_points": {"type": "array", "items": {"type": "string"}},
            "action_items": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "summary", "key_points", "action_items"],
        "additionalProperties": False,
    }
)


def _grammar(options: MeetingOptions) -> GrammarSpec | None:
    """A JSON summary is valid by construction where the engine decodes with grammars (the local
    one does; a remote one is asked to, and `_ensure_json` repairs what it sends otherwise)."""
    return SUMMARY_GRAMMAR if options.fmt == "json" else None


def _parse_json(text: str) -> dict | None:
    """The answer as JSON, after stripping code fences and text around the outermost object."""
    candidates = [text, re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())]
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if match:
        candidates.append(match.group(0))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


class MeetingSummarizer:
    def __init__(self, service: ConversationService):
        self.service = service

    def _ask(
        self, parts, budget: int | SamplingParams, cancel: threading.Event, grammar: GrammarSpec | None = None
    ) -> str:
        """`budget`: the most tokens to answer with, or the whole sampling settings."""
        params = (
            budget if isinstance(budget, SamplingParams) else SamplingParams(max_new_tokens=budget, grammar=grammar)
        )
        return collect(self.service.chat([Message("user", parts)], params, cancel=cancel))

    def _ensure_json(self, text: str, options: MeetingOptions, cancel: threading.Event, remarks: list[str]) -> str:
        value = _parse_json(text)
        if value is None and not cancel.is_set():
            value = _parse_json(self._ask([TextPart(tasks.json_only(text))], options.summary_max_tokens, cancel))
        if value is None:
            remarks.append("The model did not return valid JSON; its summary is kept as the 'summary' field.")
            value = {"title": "", "summary": text.strip(), "key_points": [], "action_items": []}
        return json.dumps(value, ensure_ascii=False, indent=2)

    def transcribe_segment(
        self, audio: np.ndarray, start: float, end: float, options: MeetingOptions, cancel: threading.Event
    ) -> tuple[Segment, str | None]:
        """One segment with the ASR prompt -> (the segment, a note when it could not be transcribed)."""
        if cancel.is_set():
            return Segment(start, end, "", done=False), None
        try:
            if max(float(audio.max()), -float(audio.min())) < SILENCE_PEAK:
                return Segment(start, end, ""), None  # a silent stretch: nothing to transcribe
            budget = options.asr_max_tokens or tasks.transcript_token_budget(end - start)
            params = SamplingParams(max_new_tokens=budget, temperature=options.asr_temperature)
            text = self._ask([AudioPart(audio), TextPart(options.asr_prompt)], params, cancel).strip()
            return Segment(start, end, text, done=not cancel.is_set()), None
        except Phi4mmError as err:
            return (
                Segment(start, end, "", done=False),
                f"Segment {tasks.clock(start)}-{tasks.clock(end)} could not be transcribed: {err}",
            )

    def transcribe(
        self, samples: np.ndarray, options: MeetingOptions, tracker: Tracker, cancel: threading.Event
    ) -> tuple[list[Segment], list[str]]:
        """Every ~30 s segment, cut at quiet points and transcribed; failures noted, not fatal."""
        return self.transcribe_many([samples], options, tracker, cancel)[0]

    def transcribe_many(
        self, recordings: list[np.ndarray], options: MeetingOptions, tracker: Tracker, cancel: threading.Event
    ) -> list[tuple[list[Segment], list[str]]]:
        """(segments, notes) per recording. All segments of all recordings are asked for together,
        as many at once as the engine takes, so a batching engine decodes them side by side."""
        jobs = [
            (owner, span)
            for owner, samples in enumerate(recordings)
            for span in quiet_cuts(samples, options.segment_seconds)
        ]

        def one(job) -> tuple[Segment, str | None]:
            owner, span = job
            # a view: no copy of the recording
            return self.transcribe_segment(recordings[owner][span.start : span.end], *span.seconds, options, cancel)

        results = [([], []) for _ in recordings]
        with ThreadPoolExecutor(self.service.engine.concurrency) as pool:
            for index, ((owner, _), (segment, note)) in enumerate(zip(jobs, pool.map(one, jobs)), 1):
                results[owner][0].append(segment)
                results[owner][1].extend([note] if note else [])
                tracker.advance(segment.end - segment.start, f"Transcribing segment {index} of {len(jobs)}")
        return results

    def run(
        self,
        samples: np.ndarray,
        options: MeetingOptions | None = None,
        progress: Progress = lambda fraction, stage, left: None,
        cancel: threading.Event | None = None,
    ) -> MeetingResult:
        options = options or MeetingOptions()
        cancel = cancel or threading.Event()
        duration = len(samples) / SAMPLE_RATE
        single = duration <= options.native_limit_seconds
        tracker = Tracker(2 * duration, progress)  # transcription, then summary work, by audio seconds
        segments, notes = self.transcribe(samples, options, tracker, cancel)
        missing = [s for s in segments if not s.done]
        if cancel.is_set():
            notes.append(
                f"Cancelled: {len(missing)} of {len(segments)} segments not transcribed "
                f"(from {tasks.clock(missing[0].start)}), and no summary made."
                if missing
                else "Cancelled before the summary was made."
            )
            return MeetingResult("single" if single else "chunked", duration, segments, "", options.fmt, notes)

        if single:
            tracker.advance(0, "Summarising the whole recording")
            prompt = tasks.summary(options.instruction, options.fmt, options.length, options.unit)
            summary = self._ask(
                [AudioPart(samples), TextPart(prompt)], options.summary_max_tokens, cancel, _grammar(options)
            )
            tracker.advance(duration, "Summarised")
        else:
            summary = self.summarize_transcript(segments, options, tracker, cancel)
        tracker.advance(2 * duration, "Done")
        return self.result("single" if single else "chunked", duration, segments, summary, notes, options, cancel)

    def summarize_transcript(
        self, segments: list[Segment], options: MeetingOptions, tracker: Tracker, cancel: threading.Event
    ) -> str:
        """The summary from the transcript alone: one prompt when it is one stretch (~10 min),
        else each stretch summarised and those partial summaries combined under the instruction."""
        windows = self._windows(segments, options.window_seconds)
        if len(windows) == 1:
            text = tasks.timed_transcript([(s.start, s.end, s.text) for s in segments if s.text])
            prompt = tasks.transcript_summary(text, options.instruction, options.fmt, options.length, options.unit)
            summary = self._ask([TextPart(prompt)], options.summary_max_tokens, cancel, _grammar(options))
            tracker.advance(segments[-1].end - segments[0].start, "Summarised")
            return summary
        partials = []
        for index, window in enumerate(windows, 1):
            text = " ".join(s.text for s in window if s.text) or "(nothing was said)"
            partials.append(
                self._ask(
                    [TextPart(tasks.partial_summary(text, index, len(windows), window[0].start, window[-1].end))],
                    options.summary_max_tokens,
                    cancel,
                )
            )
            tracker.advance(0.9 * (window[-1].end - window[0].start), f"Summarising part {index} of {len(windows)}")
        prompt = tasks.combine_summaries(partials, options.instruction, options.fmt, options.length, options.unit)
        return self._ask([TextPart(prompt)], options.summary_max_tokens, cancel, _grammar(options))

    def result(
        self,
        path: str,
        duration: float,
        segments: list[Segment],
        summary: str,
        notes: list[str],
        options: MeetingOptions,
        cancel: threading.Event,
    ) -> MeetingResult:
        """The finished result: what is missing said in the notes, a JSON summary made valid."""
        missing = [s for s in segments if not s.done]
        if cancel.is_set():
            notes.append("Cancelled while summarising: the summary is incomplete.")
        elif missing:
            notes.append(f"The summary leaves out {len(missing)} segment(s) that could not be transcribed.")
        remarks: list[str] = []
        if options.fmt == "json":
            summary = self._ensure_json(summary, options, cancel, remarks)
        return MeetingResult(path, duration, segments, summary.strip(), options.fmt, notes, remarks)

    @staticmethod
    def _windows(segments: list[Segment], seconds: float) -> list[list[Segment]]:
        windows, current = [], []
        for segment in segments:
            current.append(segment)
            if segment.end - current[0].start >= seconds:
                windows.append(current)
                current = []
        if current:
            windows.append(current)
        return windows
