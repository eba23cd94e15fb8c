"""Long recordings -> one 16 kHz mono array, decoded and resampled block by block.

A 3-hour 44.1 kHz recording would be 1.9 GB as one native-rate float array before resampling.
Here blocks are decoded, mixed to mono and resampled with torchaudio one at a time, each with
a margin of context on both sides (trimmed afterwards), and written into one preallocated
16 kHz array: the only full copy of the recording ever held.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.audio import SILENCE_PEAK, SUPPORTED, _check_length
from engine.errors import MediaError
from engine.limits import SAMPLE_RATE
from engine.media_files import check_file

BLOCK_SECONDS = 30


class BlockResampler:
    """Native-rate mono chunks in, 16 kHz samples out, exactly as resampling the whole at once
    up to floating-point rounding: blocks are whole multiples of the rate ratio, and each is
    resampled with `margin` samples of real context on both sides."""

    def __init__(self, rate: int, capacity_seconds: float):
        self.rate = rate
        g = math.gcd(rate, SAMPLE_RATE)
        self.step_in, self.step_out = rate // g, SAMPLE_RATE // g  # e.g. 441 in -> 160 out
        self.block = self.step_in * max(1, (BLOCK_SECONDS * rate) // self.step_in)
        self.margin = self.step_in * max(1, 2048 // self.step_in + 1)
        self.out = np.zeros(int(capacity_seconds * SAMPLE_RATE) + SAMPLE_RATE, np.float32)
        self.written = 0
        self.pending = np.zeros(0, np.float32)  # native samples not yet resampled
        self.history = np.zeros(0, np.float32)  # the margin before `pending`

    def feed(self, chunk: np.ndarray) -> None:
        self.pending = np.concatenate([self.pending, chunk.astype(np.float32, copy=False)])
        while len(self.pending) >= self.block + self.margin:
            self._emit(self.block)

    def finish(self) -> np.ndarray:
        while len(self.pending) > 0:
            self._emit(min(self.block, len(self.pending)))
        return self.out[: self.written]  # a view: no second copy

    def _emit(self, n: int) -> None:
        import torch
        import torchaudio.functional as AF

        window = np.concatenate([self.history, self.pending[: n + self.margin]])
        if self.rate == SAMPLE_RATE:
            resampled = window
        else:
            resampled = AF.resample(torch.from_numpy(window), self.rate, SAMPLE_RATE).numpy()
        start = len(self.history) * self.step_out // self.step_in
        count = math.ceil(n * self.step_out / self.step_in)
        piece = resampled[start : start + count]
        if self.written + len(piece) > len(self.out):  # the header under-stated the length
            self.out = np.concatenate([self.out, np.zeros(len(piece) + 60 * SAMPLE_RATE, np.float32)])
        self.out[self.written : self.written + len(piece)] = piece
        self.written += len(piece)
        self.history = self.pending[max(0, n - self.margin) : n].copy()
        self.pending = self.pending[n:]


def _soundfile_blocks(path: str, max_seconds: float) -> tuple[int, float, Iterator[np.ndarray]] | None:
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:
        return None
    seconds = info.frames / info.samplerate if info.samplerate else 0
    _check_length(seconds, max_seconds)

    def blocks():
        try:
            for block in sf.blocks(path, blocksize=info.samplerate * 10, dtype="float32", always_2d=True):
                yield block.mean(axis=1)
        except Exception as err:
            raise MediaError(f"The audio file is corrupt or truncated ({type(err).__name__}).") from None

    return info.samplerate, seconds, blocks()


def _pyav_blocks(path: str, max_seconds: float) -> tuple[int, float, Iterator[np.ndarray]]:
    import av

    try:
        container = av.open(path, mode="r")
    except Exception:
        raise MediaError(f"The audio could not be decoded: use a {SUPPORTED} file.") from None
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        container.close()
        raise MediaError("The file has no audio track.")
    seconds = (container.duration or 0) / 1e6
    _check_length(seconds, max_seconds)
    rate = stream.codec_context.sample_rate or stream.rate

    def blocks():
        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
        total = 0
        try:
            with container:
                for frame in container.decode(stream):
                    for out in mono.resample(frame):
                        total += out.samples
                        yield out.to_ndarray().reshape(-1)
                    _check_length(total / rate, max_seconds)
        except MediaError:
            raise
        except Exception as err:
            if total == 0:
                raise MediaError(f"The audio could not be decoded ({type(err).__name__}): use a {SUPPORTED} file.") from None
            # a damaged tail: keep what decoded

    return rate, seconds, blocks()


def load_long_audio(path: str | Path, limits, max_seconds: float) -> np.ndarray:
    """A recording file -> 16 kHz mono float32, holding only that one full copy."""
    path = Path(path)
    check_file(path, limits, "audio")
    rate, seconds, blocks = _soundfile_blocks(str(path), max_seconds) or _pyav_blocks(str(path), max_seconds)
    resampler = BlockResampler(rate, seconds or max_seconds)
    for block in blocks:
        resampler.feed(block)
    samples = resampler.finish()
    if samples.size == 0:
        raise MediaError("The audio clip is empty.")
    _check_length(samples.size / SAMPLE_RATE, max_seconds)
    if max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK:  # no temporary |x| copy
        raise MediaError("The audio is silent: there is nothing to listen to.")
    return samples

