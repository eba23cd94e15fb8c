"""Admission control for the HTTP API: at most `max_inflight` generations run and at most
`queue_size` more wait; anything beyond is refused at once with a retry hint (HTTP 429), as
TGI does, instead of piling up until every client times out."""

from __future__ import annotations

import math
import threading
import time

from core.errors import Overloaded, ShuttingDown


class Admission:
    def __init__(self, max_inflight: int, queue_size: int):
        self.max_inflight = max_inflight
        self.capacity = max_inflight + queue_size
        self.admitted = 0  # requests running or waiting
        self._lock = threading.Lock()
        self._mean_seconds = 1.0  # moving average of how long an admitted request takes
        self.closed = False  # the server is stopping: nothing new is admitted

    @property
    def running(self) -> int:
        return min(self.admitted, self.max_inflight)

    @property
    def queued(self) -> int:
        return max(0, self.admitted - self.max_inflight)

    def close(self) -> None:
        self.closed = True

    def enter(self) -> "Ticket":
        with self._lock:
            if self.closed:
                raise ShuttingDown()
            if self.admitted >= self.capacity:
                # the queue drains max_inflight requests per mean request time
                wait = self._mean_seconds * (self.queued + 1) / self.max_inflight
                raise Overloaded(
                    f"The server is busy ({self.admitted} requests running or queued); retry shortly.",
                    retry_after=max(1, math.ceil(wait)),
                )
            self.admitted += 1
        return Ticket(self)

    def _leave(self, seconds: float) -> None:
        with self._lock:
            self.admitted -= 1
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds


class Ticket:
    """One admitted request; `release` (idempotent) gives its place back."""

    def __init__(self, admission: Admission):
        self._admission = admission
        self._started = time.monotonic()
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._admission._leave(time.monotonic() - self._started)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
