"""Speech and sound in -> mono float32 at 16 kHz. Files are sniffed by content, not extension:
soundfile reads WAV/FLAC/OGG/MP3, PyAV reads containers (M4A/AAC, MP4, WebM); torchaudio
resamples. Length caps are checked from the header before decoding when the header knows."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from core.cpu_threads import alone
from core.errors import MediaError
from media.audio_stream import MAX_RATE, MIN_RATE, checked, decode_to_16k
from media.files import names_its_file, read_bytes
from media.limits import SAMPLE_RATE, MediaLimits
from media.parts import AudioPart


def to_mono_16k(samples: Any, sample_rate: int) -> np.ndarray:
    """Any array (frames[, channels] or channels-first), int or float -> mono float32 at 16 kHz."""
    return resample(to_mono(samples), sample_rate)


def resample(samples: np.ndarray, sample_rate: int, to: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `sample_rate` -> at `to` (torchaudio's band-limited resampling)."""
    import torch
    import torchaudio.functional as AF

    check_rate(sample_rate)
    if sample_rate != to and samples.size:
        with alone():  # on a request's thread: the decode loop keeps the CPU threads (core/cpu_threads.py)
            samples = AF.resample(torch.from_numpy(samples), int(sample_rate), to).numpy()
    return samples


def check_rate(sample_rate: Any) -> None:
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_RATE <= sample_rate <= MAX_RATE:
        raise MediaError(f"Unsupported sample rate {sample_rate!r}.")


def to_mono(samples: Any) -> np.ndarray:
    """Any array (frames[, channels] or channels-first), int or float -> mono float32, same rate."""
    samples = np.asarray(samples)
    if samples.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        samples = (samples.astype(np.float32) - 128) / 128
    elif np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    elif not np.issubdtype(samples.dtype, np.floating):
        raise MediaError("Audio samples must be numbers.")
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        channels_first = samples.shape[0] <= 8 < samples.shape[1]
        samples = samples.mean(axis=0 if channels_first else 1)
    if samples.ndim != 1:
        raise MediaError("Audio must be a 1-D (mono) or 2-D (frames x channels) array.")
    if not np.isfinite(samples).all():
        raise MediaError("The audio holds invalid (NaN or infinite) samples.")
    return samples


@names_its_file
def load_audio(source: Any, limits: MediaLimits = MediaLimits(), max_seconds: float | None = None) -> AudioPart:
    """A file path, bytes, or a (samples, rate) / (rate, samples) pair from a microphone -> 16 kHz mono.
    `max_seconds` defaults to the chat-turn cap."""
    max_seconds = limits.max_chat_audio_seconds if max_seconds is None else max_seconds
    if isinstance(source, AudioPart):
        samples = source.samples
    elif isinstance(source, tuple) and len(source) == 2:
        first, second = source
        samples, rate = (second, first) if isinstance(first, (int, np.integer)) else (first, second)
        samples = to_mono_16k(samples, rate)  # already in the caller's memory; length checked below
    else:
        samples = decode_to_16k(io.BytesIO(read_bytes(source, limits, "audio")), max_seconds)
    return AudioPart(checked(samples, max_seconds))
