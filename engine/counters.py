"""Counters that many request threads update at once (finish reasons, tokens generated).
`x += 1` on a shared attribute is a read-modify-write that loses updates between threads, so
every update takes one lock."""

from __future__ import annotations

import threading
from collections import Counter


class EngineCounters:
    def __init__(self):
        self._lock = threading.Lock()
        self._finished: Counter[str] = Counter()
        self._tokens = 0

    def finish(self, reason: str) -> None:
        with self._lock:
            self._finished[reason] += 1

    def add_tokens(self, count: int) -> None:
        with self._lock:
            self._tokens += count

    @property
    def finished(self) -> Counter[str]:
        """A snapshot of finish reasons so far (stop, length, cancelled, error)."""
        with self._lock:
            return Counter(self._finished)

    @property
    def tokens_generated(self) -> int:
        return self._tokens


class Tally:
    """Counts by name that many threads add to at once (the service's guard counts)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str = "", count: int = 1) -> None:
        with self._lock:
            self._counts[name] += count

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def total(self) -> int:
        with self._lock:
            return self._counts.total()
