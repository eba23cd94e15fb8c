"""The output guard: checks an answer while it streams, before anything is displayed.

The answer is checked as it grows, every `check_every` characters and at its end, each check
reaching back over the last `hold_back` characters, so a phrase split across chunks (or streamed
one character at a time) is still caught. Text is released only once it has been checked and lies
more than `hold_back` characters behind the end of what was checked; every pattern is written to
match at most that many characters, so no part of a blocked phrase is ever released before it is
caught. (A check costs ~0.1 ms of the event loop on this 2-core CPU, the default patterns over one
window: per token, it was a fifth of the server's event-loop time with 16 streams.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

REFUSAL = "I can't help with that. I don't infer people's sensitive traits, and I stop answers that would."

_SUBJECT = r"(?:the |this )?(?:speaker|voice|person|man|woman|narrator|caller|he|she|they)"
_COPULA = r"(?:is|are|sounds?|seems?|appears?|looks?|must be|may be|might be|could be)(?: (?:like|to be))?"
_HEDGE = r"(?: (?:most |very )?(?:likely|probably|possibly|clearly|definitely))?"
_CLAIM = rf"\b{_SUBJECT} {_COPULA}{_HEDGE} (?:an? )?"


def _claim(words: str) -> str:
    return _CLAIM + rf"(?:{words})\b"


# Each category: patterns that match a claim about a person's sensitive attribute (at most ~110 chars).
DEFAULT_CATEGORIES: dict[str, list[str]] = {
    "sensitive_attribute_inference": [
        _claim(r"gay|lesbian|bisexual|homosexual|heterosexual|straight|queer|transgender"),
        _claim(
            r"(?:black|white|asian|hispanic|latino|latina|caucasian|arab|african[- ]american)(?: (?:man|woman|person))?"
        ),
        _claim(r"muslim|christian|jewish|hindu|buddhist|sikh|atheist|catholic|religious"),
        _claim(r"democrat|republican|liberal|conservative|socialist|communist|left[- ]wing|right[- ]wing"),
        _claim(r"(?:a )?union member|unionized|unionised"),
        _claim(r"male|female|man|woman|boy|girl"),
        _claim(r"(?:poor|rich|wealthy|working[- ]class|middle[- ]class|upper[- ]class)"),
        _claim(r"(?:autistic|depressed|schizophrenic|bipolar|disabled|deaf|sick|ill)"),
        (
            rf"\b{_SUBJECT} {_COPULA}{_HEDGE} (?:in (?:his|her|their) )?(?:early |"
            rf"mid |late |mid-)?(?:teens|twenties|thirties|forties|fifties|sixties|"
            rf"seventies|[2-9]0s)\b"
        ),
        rf"\b{_SUBJECT} {_COPULA}{_HEDGE} (?:about |around )?\d{{1,2}}(?: |-)years?(?: |-)old\b",
        rf"\b{_SUBJECT} {_COPULA}{_HEDGE} (?:originally )?from (?:the )?[A-Z][a-z]{{1,30}}",
        r"\b(?:his|her|their|the speaker's) accent (?:suggests|indicates|shows|reveals|means)\b",
    ],
    "biometric_categorisation": [
        r"\b(?:based on|from|judging by) (?:his|her|their|the person's) "
        r"(?:face|facial features|skin(?: colou?r| tone)?|appearance),? "
        r"(?:he|she|they|this person) (?:is|are|appears? to be|seems? to be|looks?)\b",
    ],
}
MAX_MATCH = 120  # no default pattern matches more than this many characters
# Which media make a category apply: "she is a woman" is a fine sentence in a story, and a
# sensitive inference when it is said about the voice in an audio clip.
DEFAULT_APPLIES_TO = {"sensitive_attribute_inference": {"audio", "visual"}, "biometric_categorisation": {"visual"}}


@dataclass
class GuardPolicy:
    categories: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_CATEGORIES))
    # category -> the media ("audio", "visual", "text") that make it apply; missing means always
    applies_to: dict[str, set[str]] = field(default_factory=lambda: dict(DEFAULT_APPLIES_TO))
    # Hook for a classifier model: the answer so far -> a category name to block, or None.
    # Called at every check; a slow classifier should batch or debounce on its side.
    classifier: Callable[[str], str | None] | None = None
    hold_back: int = MAX_MATCH
    check_every: int = 16  # characters of new text between two checks (a token is ~4)
    refusal: str = REFUSAL

    def __post_init__(self):
        self._compiled = [(name, re.compile(p, re.IGNORECASE)) for name, ps in self.categories.items() for p in ps]

    def active(self, media: set[str]) -> set[str]:
        """The categories that apply to a conversation with these media ({"audio", "visual"} or none)."""
        media = media | {"text"}
        return {name for name in self.categories if media & self.applies_to.get(name, media)}

    def first_hit(self, text: str, active: set[str], since: int = 0) -> str | None:
        """The category of the first blocked phrase that ends after `since`, or None."""
        start = max(0, since - self.hold_back)
        for name, pattern in self._compiled:
            if name in active and pattern.search(text, start):
                return name
        return self.classifier(text) if self.classifier else None


@dataclass
class Verdict:
    release: str  # text that may be displayed now
    blocked: str | None = None  # category, when the answer must be replaced by the refusal


class GuardedText:
    """Feed deltas in, get back what may be shown. After a block, nothing more is released."""

    def __init__(self, policy: GuardPolicy, media: set[str] = frozenset()):
        self.policy = policy
        self.active = policy.active(set(media))
        # nothing to catch (e.g. a text-only chat with the default policy): stream without delay
        self.hold_back = policy.hold_back if self.active or policy.classifier else 0
        self.text = ""
        self.checked = 0  # the length of the text at the last check
        self.released = 0
        self.blocked: str | None = None

    def feed(self, delta: str) -> Verdict:
        if self.blocked:
            return Verdict("", self.blocked)
        self.text += delta
        if self.hold_back and len(self.text) - self.checked < self.policy.check_every:
            return Verdict("")  # nothing unchecked is released: the next check covers this delta
        hit = self.policy.first_hit(self.text, self.active, self.checked)
        self.checked = len(self.text)
        if hit:
            self.blocked = hit
            return Verdict("", hit)
        return Verdict(self._release(self.checked - self.hold_back))

    def finish(self) -> Verdict:
        """End of the answer: a last check of the whole text, then release the held-back tail."""
        if self.blocked:
            return Verdict("", self.blocked)
        hit = self.policy.first_hit(self.text, self.active)
        if hit:
            self.blocked = hit
            return Verdict("", hit)
        return Verdict(self._release(len(self.text)))

    def _release(self, upto: int) -> str:
        upto = max(upto, self.released)
        out = self.text[self.released : upto]
        self.released = upto
        return out
