"""Messages and the typed parts they are made of: what media decoding produces and the engine consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np
from PIL import Image

from media.limits import SAMPLE_RATE


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image  # RGB, already decoded (media.payloads turns files and bytes into this)


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


Part = Union[TextPart, ImagePart, AudioPart, VideoPart]
MEDIA_PARTS = (ImagePart, AudioPart, VideoPart)


@dataclass
class Message:
    role: str  # system, user or assistant (engine.request.ROLES)
    parts: list[Part]


def prompt_items(parts: list[Part]) -> Iterator[tuple[str, object]]:
    """The one walk over a message's parts, in prompt order: ("text", str), ("image", PIL image)
    or ("audio", samples). A video is its frames, one image each. The local engine's chat
    template and the remote backend's OpenAI messages are both built from this."""
    for part in parts:
        if isinstance(part, TextPart):
            yield "text", part.text
        elif isinstance(part, ImagePart):
            yield "image", part.image
        elif isinstance(part, VideoPart):
            yield from (("image", frame) for frame in part.frames)
        elif isinstance(part, AudioPart):
            yield "audio", part.samples
