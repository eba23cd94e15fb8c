"""Messages and the typed parts they are made of: what media decoding produces and the engine
consumes. Data only: the prompt text a part becomes is the engine's (engine/prompt_items.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
from PIL import Image

from media.limits import SAMPLE_RATE


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image  # RGB, already decoded (media.images.load_image)


@dataclass(frozen=True)
class AudioPart:
    samples: np.ndarray  # mono float32 at SAMPLE_RATE, as the feature extractor wants it

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


@dataclass(frozen=True)
class VideoPart:
    frames: list  # RGB PIL images in time order, each within one 448-px crop
    timestamps: list[float]  # seconds from the start, one per frame
    duration: float  # seconds
    soundtrack: np.ndarray | None = None  # mono float32 at SAMPLE_RATE; None: no sound to hear
    sound_left_out: str = ""  # why a video with sound goes to the model without it (for the user)


Part = Union[TextPart, ImagePart, AudioPart, VideoPart]
MEDIA_PARTS = (ImagePart, AudioPart, VideoPart)


@dataclass
class Message:
    role: str  # system, user or assistant (engine.request.ROLES)
    parts: list[Part]
