"""Long recordings -> one 16 kHz mono array, decoded and resampled block by block.

A 3-hour 44.1 kHz recording would be 1.9 GB as one native-rate float array before resampling.
Here blocks are decoded, mixed to mono and resampled with torchaudio one at a time, each with
a margin of context on both sides (trimmed afterwards), and written into one preallocated
16 kHz array: the only full copy of the recording ever held.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from core.cpu_threads import alone
from core.errors import MediaError
from media.files import check_file, names_its_file
from media.limits import SAMPLE_RATE

BLOCK_SECONDS = 30
SUPPORTED = "WAV, FLAC, OGG, MP3, M4A/AAC, MP4 or WebM"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this everywhere, there is nothing to listen to
# One analysis window of the model's audio features (transformers' Phi4MultimodalFeatureExtractor,
# win_length 400 at 16 kHz): a shorter clip has no feature frame and the extractor fails on it.
MIN_SAMPLES = 400
# The sample rates and channel counts taken (a microphone's pair or a file's header): telephone
# speech and below, studio rates, arrays and ambisonics. Ours, not a standard.
MIN_RATE, MAX_RATE, MAX_CHANNELS = 1_000, 384_000, 64
BLOCK_SAMPLES = 4_000_000  # samples (frames x channels) read at a time: 16 MB of float32


def too_long_message(seconds: float, max_seconds: float) -> str:
    return (
        f"The audio is {seconds / 60:.1f} minutes long; this takes up to {max_seconds / 60:.1f} minutes. "
        "For long recordings use meeting summarisation (`phi4mm summarize` or the Meeting tab)."
    )


def check_length(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise MediaError(too_long_message(seconds, max_seconds))


def checked(samples: np.ndarray, max_seconds: float) -> np.ndarray:
    """Refuse empty, too long and silent audio; returns the samples unchanged."""
    if samples.size == 0:
        raise MediaError("The audio clip is empty.")
    check_length(samples.size / SAMPLE_RATE, max_seconds)
    if samples.size < MIN_SAMPLES:
        raise MediaError(f"The audio clip is too short: it needs at least {MIN_SAMPLES * 1000 // SAMPLE_RATE} ms.")
    if max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK:  # no temporary |x| copy
        raise MediaError("The audio is silent: there is nothing to listen to.")
    return samples


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
            with alone():  # the decode loop keeps the CPU threads (core/cpu_threads.py)
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


def _soundfile_blocks(source, max_seconds: float):
    """(seconds, iterator of (rate, mono block)), or None when libsndfile does not know the format."""
    import soundfile as sf

    try:
        info = sf.info(source)
    except Exception:
        return None
    if hasattr(source, "seek"):
        source.seek(0)
    if not MIN_RATE <= info.samplerate <= MAX_RATE or not 1 <= info.channels <= MAX_CHANNELS:
        # a header no recorder writes (a damaged or forged file): its rate sizes every buffer below,
        # and a resampler from ~2 GHz to 16 kHz alone wanted gigabytes (found by the media fuzz test)
        raise MediaError(
            f"The audio file's header is not valid ({info.samplerate} Hz, {info.channels} channels); "
            f"use a {SUPPORTED} file."
        )
    seconds = info.frames / info.samplerate
    check_length(seconds, max_seconds)
    block = max(1, min(info.samplerate * 10, BLOCK_SAMPLES // info.channels))  # 10 s, or fewer channels' worth

    def blocks():
        # Not `sf.blocks`: on a file shorter than its header says, it yields its whole reused
        # np.empty buffer for the last block, so leftover memory (another request's audio, or
        # garbage up to 1e28 and NaN) reached the model. `read` returns only the frames it read.
        try:
            with sf.SoundFile(source) as f:
                while len(frames := f.read(block, dtype="float32", always_2d=True)):
                    yield info.samplerate, frames.mean(axis=1)
        except Exception:  # truncated or corrupt after a valid header
            raise MediaError("The audio file is corrupt or truncated.") from None

    return seconds, blocks()


def _pyav_blocks(source, max_seconds: float):
    """Containers (M4A/AAC, MP4, WebM): (seconds, iterator of (rate, mono block))."""
    import av

    try:
        container = av.open(source, mode="r")
    except Exception:
        raise MediaError(f"The audio could not be decoded: use a {SUPPORTED} file.") from None
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        container.close()
        raise MediaError("The file has no audio track.")
    seconds = (container.duration or 0) / 1e6
    check_length(seconds, max_seconds)

    def blocks():
        mono, rate, total = None, 0, 0
        try:
            with container:
                for frame in itertools.chain(container.decode(stream), [None]):  # None flushes the down-mixer
                    if frame is not None and mono is None:
                        rate = frame.sample_rate
                        # format conversion and down-mix only: torchaudio does the resampling
                        mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
                    for out in mono.resample(frame) if mono else []:
                        total += out.samples
                        yield rate, out.to_ndarray().reshape(-1)
                    if rate:
                        check_length(total / rate, max_seconds)
        except MediaError:
            raise
        except Exception:  # corrupt packets, an unsupported codec
            if total == 0:
                raise MediaError(f"The audio could not be decoded: use a {SUPPORTED} file.") from None
            # a damaged tail: keep what decoded

    return seconds, blocks()


def decode_to_16k(source, max_seconds: float) -> np.ndarray:
    """A path or an in-memory file -> 16 kHz mono, sniffed by content: soundfile first, then PyAV."""
    decoded = _soundfile_blocks(source, max_seconds)
    if decoded is None:
        if hasattr(source, "seek"):
            source.seek(0)
        decoded = _pyav_blocks(source, max_seconds)
    seconds, blocks = decoded
    resampler = None
    for rate, block in blocks:
        resampler = resampler or BlockResampler(rate, seconds or max_seconds)
        resampler.feed(block)
    if resampler is None:
        raise MediaError("The audio file holds no sound.")
    return resampler.finish()


@names_its_file
def load_long_audio(path: str | Path, limits, max_seconds: float) -> np.ndarray:
    """A recording file -> 16 kHz mono float32, holding only that one full copy."""
    path = Path(path)
    check_file(path, limits, "audio")
    return checked(decode_to_16k(str(path), max_seconds), max_seconds)
