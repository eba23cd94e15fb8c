"""`/v1/audio/transcriptions`' options, as Whisper's API names them, and the spoken language
for verbose_json: the caller's `language` when given, else asked of the model with its answer
held by a grammar to the eight languages it transcribes (prompts/languages.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.meeting import MeetingOptions
from app.service import ConversationService
from core.errors import InvalidRequest
from engine.grammar import GrammarSpec
from engine.request import SamplingParams
from media.limits import SAMPLE_RATE
from media.parts import AudioPart, Message, TextPart
from prompts import tasks
from prompts.languages import SPEECH_LANGUAGES, resolve_language

FORMATS = ("json", "text", "srt", "verbose_json")
LANGUAGE_GRAMMAR = GrammarSpec.lark("start: " + " | ".join(f'"{name}"' for name in SPEECH_LANGUAGES.values()))


@dataclass
class TranscriptionOptions:
    response_format: str = "json"
    language: str | None = None  # one of the eight languages' names, from the caller's code or name
    prompt: str | None = None  # names and terms the recording may contain
    temperature: float = 0.0

    @classmethod
    def checked(
        cls,
        response_format: str,
        language: str | None,
        prompt: str | None,
        temperature: float,
        granularities: list[str] | None,
    ) -> "TranscriptionOptions":
        if response_format not in FORMATS:
            raise InvalidRequest("response_format must be json, text, srt or verbose_json.", param="response_format")
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
        return cls(response_format, name, (prompt or "").strip() or None, temperature)

    def meeting_options(self) -> MeetingOptions:
        prompt = tasks.asr_with_vocabulary(self.prompt) if self.prompt else tasks.ASR
        return MeetingOptions(asr_prompt=prompt, asr_temperature=self.temperature)


def spoken_language(service: ConversationService, samples: np.ndarray, cancel) -> str:
    """Whisper's form: the language's name in lower case ("english"), from the first 30 s."""
    clip = AudioPart(samples[: 30 * SAMPLE_RATE])
    params = SamplingParams(max_new_tokens=8, grammar=LANGUAGE_GRAMMAR)
    text, _ = service.answer([Message("user", [clip, TextPart(tasks.LANGUAGE_ID)])], params, cancel=cancel)
    return text.strip().lower()
