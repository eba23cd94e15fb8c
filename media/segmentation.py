"""Cut a long recording into segments of about `target` seconds, each cut placed at the quietest
moment within `search` seconds of the boundary, so segments rarely split a word. Energy is
measured only around candidate boundaries, never over the whole recording at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from media.limits import SAMPLE_RATE

FRAME = SAMPLE_RATE // 50  # 20 ms energy frames


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
