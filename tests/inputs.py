"""Test inputs made here, never downloaded: synthetic photos and tones."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.request import AudioPart, ImagePart, TextPart


def make_photo(width: int = 500, height: int = 300, seed: int = 0) -> Image.Image:
    """A synthetic photo: a gradient sky, a sun and some noise, so crops differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 128)], axis=-1).astype(np.int16)
    sun = (x - width * 0.7) ** 2 + (y - height * 0.3) ** 2 < (min(width, height) * 0.15) ** 2
    pixels[sun] = (255, 220, 0)
    pixels += rng.integers(-20, 20, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_tone(seconds: float = 2.0, hz: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


MODALITIES = {
    "text": lambda: [TextPart("Hello, how are you?")],
    "image": lambda: [ImagePart(make_photo()), TextPart("Describe the image.")],
    "audio": lambda: [AudioPart(make_tone()), TextPart("Transcribe the audio clip into text.")],
    "image+audio": lambda: [ImagePart(make_photo()), AudioPart(make_tone())],
}
EXPECTED_ADAPTER = {"text": "base", "image": "vision", "audio": "speech", "image+audio": "vision"}
