"""The one walk over a message's typed parts, in prompt order: where a video becomes prompt
items (its frames, its soundtrack, the note that says when the frames were taken). The local
engine's template input (engine/prompt_prep.py) and the remote backend's OpenAI messages
(engine/remote.py) are both built from it, so both send the model the same thing."""

from __future__ import annotations

from typing import Iterator

from media.parts import AudioPart, ImagePart, Part, TextPart, VideoPart
from prompts.tasks import video_frames_note


def video_note(video: VideoPart) -> str:
    """The text that follows a video in the prompt: when each frame was taken, and whether the
    audio before it is the video's own sound."""
    sound = "heard" if video.soundtrack is not None else "left out" if video.sound_left_out else "none"
    return video_frames_note(video.timestamps, video.duration, sound)


def prompt_items(parts: list[Part]) -> Iterator[tuple[str, object]]:
    """("text", str), ("image", PIL image) or ("audio", samples), in prompt order. A video is its
    frames, one image each, then its soundtrack (vision + speech in one prompt, as the report
    trains them), then its note."""
    for part in parts:
        if isinstance(part, TextPart):
            yield "text", part.text
        elif isinstance(part, ImagePart):
            yield "image", part.image
        elif isinstance(part, VideoPart):
            yield from (("image", frame) for frame in part.frames)
            if part.soundtrack is not None:
                yield "audio", part.soundtrack
            yield "text", video_note(part) + "\n"
        elif isinstance(part, AudioPart):
            yield "audio", part.samples
