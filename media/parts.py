"""Messages and the typed parts they are made of: what media decoding produces and the engine consumes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Union

import numpy as np
from PIL import Image

from media.limits import SAMPLE_RATE
from prompts.tasks import video_frames_note


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
    soundtrack: np.ndarray | None = None  # mono float32 at SAMPLE_RATE; None: no sound to hear
    sound_left_out: str = ""  # why a video with sound goes to the model without it (for the user)

    @property
    def note(self) -> str:
        """The text that follows the video in the prompt: when each frame was taken, and whether
        the audio before it is the video's own sound."""
        sound = "heard" if self.soundtrack is not None else "left out" if self.sound_left_out else "none"
        return video_frames_note(self.timestamps, self.duration, sound)


Part = Union[TextPart, ImagePart, AudioPart, VideoPart]
MEDIA_PARTS = (ImagePart, AudioPart, VideoPart)


@dataclass
class Message:
    role: str  # system, user or assistant (engine.request.ROLES)
    parts: list[Part]


def prompt_items(parts: list[Part]) -> Iterator[tuple[str, object]]:
    """The one walk over a message's parts, in prompt order: ("text", str), ("image", PIL image)
    or ("audio", samples). A video is its frames, one image each, then its soundtrack (vision +
    speech in one prompt, as the report trains them), then its note. The local engine's chat
    template and the remote backend's OpenAI messages are both built from this."""
    for part in parts:
        if isinstance(part, TextPart):
            yield "text", part.text
        elif isinstance(part, ImagePart):
            yield "image", part.image
        elif isinstance(part, VideoPart):
            yield from (("image", frame) for frame in part.frames)
            if part.soundtrack is not None:
                yield "audio", part.soundtrack
            yield "text", part.note + "\n"
        elif isinstance(part, AudioPart):
            yield "audio", part.samples
