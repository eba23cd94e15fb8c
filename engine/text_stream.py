"""Token ids -> text deltas, holding back what could still turn into a stop string."""

from __future__ import annotations


class IncrementalDetokenizer:
    """Decodes only a short window of recent tokens per step (constant cost per token), and
    holds back text while a multi-byte character is still incomplete (a trailing U+FFFD)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return new_text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        """At the end of an answer: the text still held back (an answer can end inside a
        multi-byte character; what decoded before it must not be lost with it)."""
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return new_text[len(prefix_text) :]


class StopMatcher:
    """Feeds text deltas through; emits only text that can no longer be part of a stop string."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, delta: str) -> str:
        self.text += delta
        if not self.stops:
            return self._emit(len(self.text))
        longest = max(map(len, self.stops))
        start = max(0, self.emitted - longest + 1)
        hits = [i for i in (self.text.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self._emit(min(hits))
        return self._emit(len(self.text) - self._held_back())

    def flush(self) -> str:
        return "" if self.stopped else self._emit(len(self.text))

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of some stop string."""
        for n in range(min(len(self.text), max(map(len, self.stops)) - 1), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stops):
                return n
        return 0

    def _emit(self, upto: int) -> str:
        upto = max(upto, self.emitted)
        out = self.text[self.emitted : upto]
        self.emitted = upto
        return out


class StopWatch:
    """The answer's text as its reader will see it, watched in the decode loop's thread for the
    request's stop strings: the token that completes one is the answer's last, so its reader is
    told at once (a streamed answer's last event waits for no flush) and the row leaves at the
    next round instead of decoding until the reader closes it. The reader's own matcher, fed the
    same tokens, stops at the same one and keeps the text."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.detokenizer = IncrementalDetokenizer(tokenizer)
        self.matcher = StopMatcher(stops)

    def hit(self, token: int) -> bool:
        """Feeds one answer token (not an end token: the reader does not feed those either)."""
        self.matcher.feed(self.detokenizer.push(token))
        return self.matcher.stopped
