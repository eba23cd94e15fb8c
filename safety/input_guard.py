"""The input guard: size limits on what a request may carry, and detection of attempts to
override the system prompt (logged, then answered with the mitigations reinforced)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

log = logging.getLogger(__name__)


class InputRejected(ValueError):
    """A request over the input limits; the message says which limit and by how much."""


@dataclass(frozen=True)
class InputLimits:
    max_message_chars: int = 32_000  # one message's text
    max_total_chars: int = 200_000  # all text in the conversation
    max_images: int = 16  # photos (a video counts under max_videos, whatever its frames)
    max_audio_clips: int = 8
    max_videos: int = 2
    max_messages: int = 200


# Phrasings of "forget your instructions". Matching is case-insensitive and whitespace-tolerant.
OVERRIDE_PATTERNS = [
    r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:previous|prior|above|earlier|system|all|your)\b.{0,20}"
    r"\b(?:instructions?|rules|prompts?|guidelines|directions|restrictions)\b",
    r"\b(?:reveal|print|show|repeat|output)\b.{0,30}\b(?:system prompt|system message|hidden instructions)\b",
    r"\byou are (?:now )?(?:DAN|in developer mode|jailbroken|unrestricted|free of (?:all )?(?:rules|restrictions))\b",
    r"\b(?:pretend|act as if|imagine) (?:that )?(?:you have|there are) no (?:rules|restrictions|guidelines|filters)\b",
    r"\bnew (?:system )?instructions?:",
    r"<\|(?:system|end|assistant)\|>",
]
_OVERRIDE = [re.compile(p, re.IGNORECASE | re.DOTALL) for p in OVERRIDE_PATTERNS]


@dataclass(frozen=True)
class InputCheck:
    override_attempt: bool
    matched: str = ""  # the phrase that looked like an override, for the log


def detect_override(text: str) -> str:
    """The first override-looking phrase in `text`, or ''."""
    for pattern in _OVERRIDE:
        match = pattern.search(text)
        if match:
            return match.group(0)
    return ""


def check_input(
    system: str, turns: list[str], images: int, audio_clips: int, videos: int, limits: InputLimits = InputLimits()
) -> InputCheck:
    """`turns`: each non-system message's text, newest last. Raise InputRejected over a limit;
    report (and log) an override attempt in the newest turn."""
    if len(turns) > limits.max_messages:
        raise InputRejected(f"The conversation has {len(turns)} messages; the limit is {limits.max_messages}.")
    for label, text in [("The system prompt", system)] + [(f"Message {i}", t) for i, t in enumerate(turns, 1)]:
        if len(text) > limits.max_message_chars:
            raise InputRejected(
                f"{label} is {len(text):,} characters long; the limit is {limits.max_message_chars:,}. "
                "For long documents, send the part you need."
            )
    total = len(system) + sum(map(len, turns))
    if total > limits.max_total_chars:
        raise InputRejected(
            f"The conversation holds {total:,} characters of text; the limit is {limits.max_total_chars:,}."
        )
    for count, limit, what in (
        (images, limits.max_images, "images"),
        (audio_clips, limits.max_audio_clips, "audio clips"),
        (videos, limits.max_videos, "videos"),
    ):
        if count > limit:
            raise InputRejected(f"The conversation has {count} {what}; the limit is {limit}.")
    matched = detect_override(turns[-1]) if turns else ""
    if matched:
        log.warning("system-prompt override attempt detected: %r", matched[:120])
    return InputCheck(bool(matched), matched)
