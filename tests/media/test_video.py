"""Video: N frames sampled uniformly over the whole clip by seeking, in order, with timestamps;
caps on length and resolution; bad files refused with our typed error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import MediaError
from engine.request import GenerationRequest
from media.limits import MediaLimits
from media.parts import Message, TextPart
from media.video import load_video
from tooling.inputs import write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_video(path, seconds=10, fps=10, size=(640, 360))  # 100 frames
    return path


def test_sixteen_frames_uniformly_over_the_clip(clip):
    video = load_video(clip)
    assert len(video.frames) == len(video.timestamps) == 16
    assert video.duration == pytest.approx(10.0)
    assert video.timestamps == sorted(video.timestamps)
    assert video.timestamps[0] < 0.7 and video.timestamps[-1] > 9.3  # covers the whole clip
    gaps = np.diff(video.timestamps)
    assert gaps.min() > 0.5 and gaps.max() < 0.75
    for frame, stamp in zip(video.frames, video.timestamps):
        assert frame.mode == "RGB" and frame.size == (448, 252)  # fits one crop, aspect kept
        level = np.asarray(frame)[100, 100, 0]
        assert abs(int(level) - (round(stamp * 10) * 2) % 256) <= 6  # the frame shown is the frame stamped


def test_frames_are_found_by_seeking_not_by_decoding_everything(clip, monkeypatch):
    reads, real = [], cv2.VideoCapture

    class CountingCapture:  # a proxy: subclassing cv2.VideoCapture in Python crashes OpenCV 5 later
        def __init__(self, *args):
            self._capture = real(*args)

        def read(self, *args):
            reads.append(1)
            return self._capture.read(*args)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", CountingCapture)
    video = load_video(clip, frames=8)
    assert len(video.frames) == 8 and len(reads) == 8  # of 100 frames


def test_short_clip_gives_what_it_has(tmp_path):
    write_video(tmp_path / "short.mp4", seconds=0.5, fps=10)
    video = load_video(tmp_path / "short.mp4")
    assert len(video.frames) == 5 and video.timestamps == sorted(set(video.timestamps))


def test_bytes_work_like_files(clip):
    assert load_video(clip.read_bytes()).timestamps == load_video(clip).timestamps


def test_length_and_resolution_caps(clip):
    with pytest.raises(MediaError, match="10.0 seconds|0.2 minutes long; the limit is 0 minutes"):
        load_video(clip, MediaLimits(max_video_seconds=5))
    with pytest.raises(MediaError, match="640×360; the limit is 4K"):
        load_video(clip, MediaLimits(max_video_pixels=320 * 240))
    with pytest.raises(MediaError, match="between 1 and 64"):
        load_video(clip, frames=100)


@pytest.mark.parametrize("data, match", [(b"", "empty"), (b"not a video" * 100, "could not be opened|no readable")])
def test_bad_videos_give_our_error(data, match):
    with pytest.raises(MediaError, match=match):
        load_video(data)


def test_truncated_video(clip):
    data = clip.read_bytes()
    with pytest.raises(MediaError):
        load_video(data[: len(data) // 5])


def test_video_goes_to_the_vision_adapter_one_crop_per_frame(engine, clip):
    video = load_video(clip, frames=4)
    request = GenerationRequest([Message("user", [video, TextPart("What happens?")])])
    prepared = engine.prepare(request)
    ids = prepared.inputs["input_ids"][0]
    assert prepared.adapter == "vision"
    per_frame = int((ids == engine.tokenizer.image_token_id).sum()) / 4
    assert per_frame <= 545  # each frame within one 448-px crop, whatever the crop budget
