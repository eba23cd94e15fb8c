"""Turn what callers send (files, bytes, arrays, dicts) into the engine's typed message parts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from engine.errors import InvalidRequest, MediaError
from engine.request import AudioPart, ImagePart, Message, Part, TextPart

SAMPLE_RATE = 16000  # the feature extractor's rate
PART_TYPES = ("text", "image", "audio")


def load_image(source: Any) -> ImagePart:
    """A PIL image, a path or raw bytes -> an RGB image with EXIF orientation applied."""
    if isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
            image.load()
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise MediaError(f"Could not read the image: {err}") from None
    return ImagePart(ImageOps.exif_transpose(image).convert("RGB"))


def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Any shape (frames[, channels]), int or float -> mono float32 at 16 kHz."""
    import torch
    import torchaudio.functional as AF

    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples.astype(np.float32) / np.iinfo(samples.dtype).max
    samples = samples.astype(np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise MediaError("Audio must be a 1-D (mono) or 2-D (frames x channels) array.")
    if sample_rate != SAMPLE_RATE:
        samples = AF.resample(torch.from_numpy(samples), sample_rate, SAMPLE_RATE).numpy()
    return samples


def load_audio(source: Any) -> AudioPart:
    """A (samples, rate) pair, a path or raw bytes of a soundfile-readable file -> 16 kHz mono."""
    if isinstance(source, tuple) and len(source) == 2:
        samples, rate = source
    else:
        import soundfile as sf

        try:
            samples, rate = sf.read(io.BytesIO(source) if isinstance(source, bytes) else str(source), dtype="float32")
        except (sf.LibsndfileError, OSError, RuntimeError, TypeError) as err:
            raise MediaError(f"Could not read the audio: {err}") from None
    samples = to_mono_16k(samples, int(rate))
    if samples.size == 0:
        raise MediaError("The audio clip is empty.")
    return AudioPart(samples)


def parse_part(raw: Any) -> Part:
    """`{"type": "text"|"image"|"audio", ...}` (or a ready part) -> a typed part."""
    if isinstance(raw, (TextPart, ImagePart, AudioPart)):
        return raw
    if isinstance(raw, str):
        return TextPart(raw)
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text" and isinstance(raw.get("text"), str):
        return TextPart(raw["text"])
    if kind == "image" and raw.get("image") is not None:
        return load_image(raw["image"])
    if kind == "audio" and raw.get("audio") is not None:
        return load_audio(raw["audio"])
    if kind in PART_TYPES:
        raise InvalidRequest(f"A {kind!r} part is missing its {kind!r} field.", param="messages")
    raise InvalidRequest(
        f"Unknown message part type {kind!r}; supported types are {', '.join(PART_TYPES)}.", param="messages"
    )


def parse_messages(raw_messages: list[dict]) -> list[Message]:
    """OpenAI-like `[{"role", "content": str | [parts]}]` -> typed messages."""
    messages = []
    for raw in raw_messages:
        if not isinstance(raw, dict) or "role" not in raw:
            raise InvalidRequest("Each message needs a `role` and `content`.", param="messages")
        content = raw.get("content", "")
        parts = [TextPart(content)] if isinstance(content, str) else [parse_part(p) for p in content]
        messages.append(Message(raw["role"], parts))
    return messages
