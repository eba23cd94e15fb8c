"""Video -> N frames sampled uniformly over the whole clip, by seeking (never decoding every
frame), with their timestamps, and its soundtrack at 16 kHz. Frames are shrunk to fit one 448-px
crop, so each costs at most one crop's tokens whatever the request's crop budget. The soundtrack
is decoded block by block (media/audio_stream.py), and only for a video within the chat-audio
cap: a longer one goes to the model as frames alone, and the part says why for the user."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from core.errors import MediaError
from media.audio_stream import MIN_SAMPLES, SILENCE_PEAK, decode_to_16k
from media.files import check_file, names_its_file, read_bytes
from media.limits import MediaLimits
from media.parts import VideoPart

FRAME_BOX = 448  # the vision encoder's crop size
FORMATS = "MP4, WebM, MOV, AVI or MKV"


@names_its_file
def load_video(source: Any, limits: MediaLimits = MediaLimits(), frames: int | None = None) -> VideoPart:
    frames = frames or limits.video_frames
    if not 1 <= frames <= 64:
        raise MediaError(f"Video frames must be between 1 and 64 (got {frames}); the model was trained with up to 64.")
    if isinstance(source, (bytes, bytearray)):
        data = read_bytes(source, limits, "video")
        # OpenCV reads from paths only; the temporary copy lives just for the sampling
        with tempfile.NamedTemporaryFile(suffix=".video", delete=False) as tmp:
            tmp.write(data)
        try:
            return _with_soundtrack(_sample(tmp.name, limits, frames), tmp.name, limits)
        finally:
            os.unlink(tmp.name)
    path = Path(source)
    check_file(path, limits, "video")
    return _with_soundtrack(_sample(str(path), limits, frames), str(path), limits)


def _with_soundtrack(video: VideoPart, path: str, limits: MediaLimits) -> VideoPart:
    """The video with its sound: none when it has no audio track or only silence; left out, with
    the reason, when it is longer than a chat turn's audio may be or its audio does not decode
    (the frames alone still answer the question)."""
    import av

    try:
        with av.open(path) as container:
            if not any(stream.type == "audio" for stream in container.streams):
                return video
    except Exception:  # OpenCV read it, PyAV cannot: treat it as frames only
        return video
    cap = limits.max_chat_audio_seconds
    if video.duration > cap:
        return replace(
            video,
            sound_left_out=f"The video's sound was left out: the video is {_span(video.duration)} long, "
            f"and sound is taken with videos up to {_span(cap)}.",
        )
    try:
        # a little over the cap: an audio track may run a few frames past the pictures
        samples = decode_to_16k(path, cap + 1.0)
    except MediaError:
        return replace(video, sound_left_out="The video's sound could not be decoded; its frames are used alone.")
    if samples.size < MIN_SAMPLES or max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK:
        return video  # a silent (or too short) track: nothing to hear
    return replace(video, soundtrack=samples)


def _sample(path: str, limits: MediaLimits, frames: int) -> VideoPart:
    import cv2

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise MediaError(f"The video could not be opened: use an {FORMATS} file.")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if count <= 0 or not fps or fps <= 0 or width <= 0 or height <= 0:
            raise MediaError(f"The video has no readable frames: use an {FORMATS} file.")
        duration = count / fps
        if duration > limits.max_video_seconds:
            raise MediaError(
                f"The video is {duration / 60:.1f} minutes long; "
                f"the limit is {limits.max_video_seconds / 60:.0f} minutes."
            )
        if width * height > limits.max_video_pixels:
            raise MediaError(f"The video is {width}×{height}; the limit is 4K (3840×2160).")
        # the middle of each of N equal spans, so a short clip is not all start and end
        targets = sorted({min(count - 1, int((i + 0.5) * count / frames)) for i in range(frames)})
        images, stamps = [], []
        for index in targets:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = capture.read()
            if not ok or bgr is None:
                continue  # a damaged stretch: keep the frames that decode
            image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            image.thumbnail((FRAME_BOX, FRAME_BOX), Image.Resampling.BICUBIC)
            images.append(image)
            stamps.append(round(index / fps, 3))
    except MediaError:
        raise
    except Exception:  # OpenCV raises cv2.error and others on broken streams
        raise MediaError("The video could not be decoded.") from None
    finally:
        capture.release()
    if not images:
        raise MediaError(f"No frame of the video could be decoded: use an {FORMATS} file.")
    return VideoPart(frames=images, timestamps=stamps, duration=round(duration, 3))


def _span(seconds: float) -> str:
    return f"{seconds:.0f} seconds" if seconds < 90 else f"{seconds / 60:.1f} minutes"
