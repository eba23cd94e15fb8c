"""Cut a long recording into segments of about `target` seconds, each cut placed at the quietest
moment within `search` seconds of the boundary, so segments rarely split a word. Energy is
measured only around candidate boundaries, never over the whole recording at once. A recording
still being made (live captions) is cut as it arrives by `LiveCutter`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.limits import SAMPLE_RATE

FRAME = SAMPLE_RATE // 50  # 20 ms energy frames
SILENCE_ENERGY = 1e-8  # -80 dBFS: digital silence, whatever the speech level


@dataclass(frozen=True)
class Span:
    start: int  # sample index, inclusive
    end: int  # sample index, exclusive

    @property
    def seconds(self) -> tuple[float, float]:
        return self.start / SAMPLE_RATE, self.end / SAMPLE_RATE


def quietest_point(samples: np.ndarray, lo: int, hi: int) -> int:
    window = samples[lo:hi]
    frames = window[: len(window) // FRAME * FRAME].reshape(-1, FRAME)
    if not len(frames):
        return (lo + hi) // 2
    energy = np.square(frames, dtype=np.float32).mean(axis=1)
    return lo + int(np.argmin(energy)) * FRAME + FRAME // 2


def quiet_cuts(samples: np.ndarray, target: float = 30.0, search: float = 5.0) -> list[Span]:
    """Contiguous spans covering every sample exactly once."""
    total, step, slack = len(samples), int(target * SAMPLE_RATE), int(search * SAMPLE_RATE)
    spans, start = [], 0
    while total - start > step + slack:
        ideal = start + step
        cut = quietest_point(samples, max(start + FRAME, ideal - slack), min(total - FRAME, ideal + slack))
        spans.append(Span(start, cut))
        start = cut
    spans.append(Span(start, total))
    return spans


class LiveCutter:
    """Audio that arrives in chunks (a microphone) -> segments of `min_seconds` to `max_seconds`,
    each closed at the first pause after `min_seconds` (a stretch of `pause_seconds` well below
    the speech level around it), or at the quietest moment when `max_seconds` comes without one.
    Only the open segment is held, so memory stays the same for a meeting of any length."""

    def __init__(self, rate: int, min_seconds: float = 10.0, max_seconds: float = 30.0, pause_seconds: float = 0.3):
        self.rate = rate
        self.frame = max(1, rate // 50)  # 20 ms energy frames
        self.low, self.high = int(min_seconds * rate), int(max_seconds * rate)
        self.pause_frames = max(1, round(pause_seconds * 50))
        self.pending = np.zeros(0, np.float32)
        self.offset = 0  # samples of the recording before `pending`

    def feed(self, chunk: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        """(start s, end s, samples) of every segment this chunk closes."""
        self.pending = np.concatenate([self.pending, np.asarray(chunk, np.float32)])
        closed = []
        while (cut := self._cut()) is not None:
            closed.append(self._close(cut))
        return closed

    def finish(self) -> list[tuple[float, float, np.ndarray]]:
        """The last, open segment (none when nothing is left)."""
        return [self._close(len(self.pending))] if len(self.pending) else []

    @property
    def seconds(self) -> float:
        """How much of the recording has arrived."""
        return (self.offset + len(self.pending)) / self.rate

    def _close(self, cut: int) -> tuple[float, float, np.ndarray]:
        segment = self.pending[:cut]
        start = self.offset / self.rate
        self.offset += cut
        self.pending = self.pending[cut:].copy()  # the closed segment's memory goes with it
        return start, self.offset / self.rate, segment

    def _cut(self) -> int | None:
        frame, count = self.frame, len(self.pending) // self.frame
        if count * frame < self.low + self.pause_frames * frame:
            return None
        energy = np.square(self.pending[: count * frame].reshape(count, frame), dtype=np.float32).mean(axis=1)
        # quiet: 13 dB under the loud frames' level (what speech reaches), or below digital silence
        quiet = energy < max(0.05 * float(np.percentile(energy, 95)), SILENCE_ENERGY)
        run = 0
        for index in range(self.low // frame, min(count, self.high // frame)):
            run = run + 1 if quiet[index] else 0
            if run == self.pause_frames:  # a pause: cut in its middle once speech resumes or a second has passed
                start = end = index + 1 - run
                while end < count and quiet[end]:
                    end += 1
                if end < count or end - start >= 50:
                    return (start + end) // 2 * frame
                break  # the pause goes on past what has arrived: wait for the next chunk
        if len(self.pending) >= self.high:  # no pause: the quietest moment of the last five seconds
            return quietest_point(self.pending, max(self.low, self.high - 5 * self.rate), self.high)
        return None
