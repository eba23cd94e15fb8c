"""`/v1/audio/transcriptions`' and `/v1/audio/translations`' options, as Whisper's API names
them; the spoken language for verbose_json: the caller's `language` when given, else asked of the
model with its answer held by a grammar to the eight languages it transcribes
(prompts/languages.py); WebVTT; and a streamed transcript as OpenAI's `transcript.text.*` events."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterator

import numpy as np

from app.api_errors import ModelNotFound
from app.meeting import MeetingOptions, Segment
from app.service import ConversationService
from app.sse import event, stream_error
from app.sse_stream import OffLoop
from core.errors import InvalidRequest
from core.settings import Settings
from engine.grammar import GrammarSpec
from engine.model_family import adapter_for
from engine.request import PENDING, SamplingParams
from media.audio_stream import SILENCE_PEAK
from media.limits import SAMPLE_RATE
from media.parts import AudioPart, Message, TextPart
from media.segmentation import quiet_cuts
from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES, resolve_language

FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
STREAMED_FORMATS = ("json", "text")  # a subtitle or verbose_json answer needs every segment's times
TRANSLATION_TARGET = "English"  # Whisper's API translates into English only
LANGUAGE_GRAMMAR = GrammarSpec.lark("start: " + " | ".join(f'"{name}"' for name in SPEECH_LANGUAGES.values()))


@dataclass
class TranscriptionOptions:
    response_format: str = "json"
    language: str | None = None  # one of the eight languages' names, from the caller's code or name
    prompt: str | None = None  # names and terms the recording may contain
    temperature: float = 0.0
    translate: bool = False  # into English (/v1/audio/translations)
    stream: bool = False  # transcript.text.delta events, then transcript.text.done

    @classmethod
    def checked(
        cls,
        response_format: str,
        language: str | None,
        prompt: str | None,
        temperature: float,
        granularities: list[str] | None,
        translate: bool = False,
        stream: bool = False,
    ) -> "TranscriptionOptions":
        if response_format not in FORMATS:
            raise InvalidRequest(f"response_format must be one of {', '.join(FORMATS)}.", param="response_format")
        if stream and response_format not in STREAMED_FORMATS:
            raise InvalidRequest(
                "`stream` gives json or text events; ask srt, vtt or verbose_json whole.", param="stream"
            )
        if set(granularities or []) - {"segment"}:
            raise InvalidRequest(
                "timestamp_granularities[] takes `segment` (word timestamps are not supported).",
                param="timestamp_granularities",
            )
        try:
            name = resolve_language(language) if language else None
        except ValueError as err:
            raise InvalidRequest(str(err), param="language") from None
        if not 0.0 <= temperature <= 1.0:
            raise InvalidRequest(f"`temperature` must be between 0 and 1 (got {temperature!r}).", param="temperature")
        return cls(response_format, name, (prompt or "").strip() or None, temperature, translate, stream)

    def meeting_options(self) -> MeetingOptions:
        if self.translate:  # the caller's vocabulary hint is for transcripts: accepted, unused here
            prompt = tasks.translate(TRANSLATION_TARGET)
        else:
            prompt = tasks.asr_with_vocabulary(self.prompt) if self.prompt else tasks.ASR
        return MeetingOptions(asr_prompt=prompt, asr_temperature=self.temperature)


def check_model(model: str | None, settings: Settings) -> None:
    """The served name, the adapter audio selects (`speech`) or Whisper's `whisper-1`; none at all
    means the served model."""
    if model not in (None, settings.served_name(), adapter_for({"audio"}), "whisper-1"):
        raise ModelNotFound(f"The model {model!r} does not exist here; transcribe with {settings.served_name()!r}.")


def vtt(segments: list[Segment]) -> str:
    """WebVTT: a header, then one cue per segment (an empty one shows as an ellipsis, as in srt)."""

    def stamp(t: float) -> str:
        ms = int(round(t * 1000))
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"

    cues = [
        f"{stamp(s.start)} --> {stamp(s.end)}\n{(s.text if s.done else '[not transcribed]') or '…'}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)


def transcript_events(
    service: ConversationService,
    samples: np.ndarray,
    options: TranscriptionOptions,
    cancel: threading.Event,
    on_token: Callable[[], None] | None = None,
) -> Iterator[str]:
    """The transcript as OpenAI streams it: `transcript.text.delta` events as tokens come, segment
    after segment (~30 s each, cut at quiet points), then `transcript.text.done` with the whole
    text. The segments run one after another here, so the text arrives in order. Each segment's
    audio is prepared off the event loop (`OffLoop`: app/sse_stream.py), its tokens then come as
    any stream's do (`PENDING` until `on_token`), so no thread is held while it decodes. What fails
    after the response has started ends the stream with an error event."""
    meeting = options.meeting_options()
    text = ""
    try:
        for span in quiet_cuts(samples, meeting.segment_seconds):
            audio = samples[span.start : span.end]
            if max(float(audio.max()), -float(audio.min())) < SILENCE_PEAK:
                continue  # a silent stretch: nothing to transcribe
            budget = tasks.transcript_token_budget(len(audio) / SAMPLE_RATE)
            params = SamplingParams(max_new_tokens=budget, temperature=meeting.asr_temperature)
            started = False  # a segment's text is joined to the one before by one space
            messages = [Message("user", [AudioPart(audio), TextPart(meeting.asr_prompt)])]
            replies = yield OffLoop(partial(service.chat, messages, params, cancel=cancel, on_token=on_token))
            for reply in replies:
                if reply is PENDING:
                    yield PENDING
                    continue
                delta = reply.text if started else reply.text.lstrip()
                if delta:
                    delta = delta if started or not text else " " + delta
                    started, text = True, text + delta
                    yield event({"type": "transcript.text.delta", "delta": delta})
        yield event({"type": "transcript.text.done", "text": text})
    except Exception as err:  # noqa: BLE001 - the stream's last word, whatever went wrong
        yield event(stream_error(err))


def spoken_language(service: ConversationService, samples: np.ndarray, cancel) -> str:
    """Whisper's form: the language's name in lower case ("english"), from the first 30 s."""
    clip = AudioPart(samples[: 30 * SAMPLE_RATE])
    params = SamplingParams(max_new_tokens=8, grammar=LANGUAGE_GRAMMAR)
    text, _ = service.answer([Message("user", [clip, TextPart(tasks.LANGUAGE_ID)])], params, cancel=cancel)
    return text.strip().lower()
