"""Video: N frames sampled uniformly over the whole clip by seeking, in order, with timestamps;
caps on length and resolution; bad files refused with our typed error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.errors import MediaError
from engine.prompt_items import video_note
from engine.request import GenerationRequest, SamplingParams
from media.audio import to_mono_16k
from media.limits import MediaLimits
from media.parts import Message, TextPart
from media.video import load_video
from tooling.inputs import write_video, write_video_with_speech


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


# -- with its soundtrack (issue 18) -------------------------------------------------------------

SAID = "The red ball rolls under the kitchen table."


@pytest.fixture(scope="module")
def spoken_clip(tmp_path_factory):
    """An MP4 drawn with OpenCV whose soundtrack is espeak-ng saying SAID: (path, the speech at 22,050 Hz)."""
    folder = tmp_path_factory.mktemp("spoken")
    speech = write_video_with_speech(folder / "spoken.mp4", SAID, folder)
    return folder / "spoken.mp4", speech


def test_the_soundtrack_comes_with_the_frames(spoken_clip):
    path, speech = spoken_clip
    video = load_video(path)
    assert video.soundtrack is not None and video.sound_left_out == ""
    want = to_mono_16k(speech, 22050)
    got = video.soundtrack
    assert abs(len(got) - (len(want) + 8000)) < 0.15 * 16000  # the speech and its half second of quiet
    # the same speech, up to AAC's delay and loss: the best alignment correlates closely
    lags = range(-3000, 3001, 8)
    best = max(lags, key=lambda lag: float(np.dot(want[3000:-3000], got[3000 + lag : len(want) - 3000 + lag])))
    aligned = got[3000 + best : len(want) - 3000 + best]
    assert np.corrcoef(want[3000:-3000], aligned)[0, 1] > 0.9
    for frame, stamp in zip(video.frames, video.timestamps):  # the frames are still the frames stamped
        assert abs(int(np.asarray(frame)[60, 60, 0]) - (round(stamp * 10) * 2) % 256) <= 6
    assert video_note(video).endswith("seconds. The audio is the video's soundtrack.")


def test_frames_then_sound_then_note_in_the_model_inputs(engine, spoken_clip):
    """Counted against transformers' own processors, which we did not write: every frame's image
    tokens and the soundtrack's audio tokens, in that order, then the note, under the vision adapter."""
    from transformers import Phi4MultimodalFeatureExtractor, Phi4MultimodalImageProcessorFast

    video = load_video(spoken_clip[0], frames=4)
    prepared = engine.prepare(GenerationRequest([Message("user", [video, TextPart("What is said?")])]))
    ids = prepared.inputs["input_ids"][0]
    image_at = (ids == engine.tokenizer.image_token_id).nonzero().flatten()
    audio_at = (ids == engine.tokenizer.audio_token_id).nonzero().flatten()
    frames = Phi4MultimodalImageProcessorFast()(video.frames, return_tensors="pt")
    sound = Phi4MultimodalFeatureExtractor()([video.soundtrack], sampling_rate=16000, return_tensors="pt")
    assert len(image_at) == int(frames["num_img_tokens"].sum()) and len(frames["num_img_tokens"]) == 4
    assert len(audio_at) == int(sound["audio_embed_sizes"].sum()) > 12 * len(video.soundtrack) / 16000
    assert image_at.max() < audio_at.min()
    after = engine.tokenizer.decode(ids[audio_at.max() + 1 :])
    assert after.index("These 4 frames") < after.index("soundtrack.") < after.index("What is said?")
    assert prepared.adapter == "vision"
    assert prepared.inputs["audio_input_features"].shape[0] == 1


def test_the_sound_goes_through_the_vision_speech_projection(engine, spoken_clip):
    """With frames present, transformers embeds the audio through its vision + speech projection
    (the report's mode for both at once), not the speech-only one."""
    embed = engine.model.model.embed_tokens_extend.audio_embed
    used = []
    hooks = [
        getattr(embed, name).register_forward_hook(lambda *_, name=name: used.append(name))
        for name in ("up_proj_for_speech", "up_proj_for_vision_speech")
    ]
    try:
        video = load_video(spoken_clip[0], frames=2)
        engine.generate(GenerationRequest([Message("user", [video])], SamplingParams(max_new_tokens=1)))
    finally:
        for hook in hooks:
            hook.remove()
    assert used == ["up_proj_for_vision_speech"]


def test_a_video_without_sound_is_frames_and_note_as_before(engine, clip):
    video = load_video(clip, frames=2)
    assert video.soundtrack is None and video.sound_left_out == ""
    assert video_note(video).endswith("seconds.")
    ids = engine.prepare(GenerationRequest([Message("user", [video])])).inputs["input_ids"][0]
    assert int((ids == engine.tokenizer.audio_token_id).sum()) == 0


def test_a_silent_soundtrack_is_no_sound(tmp_path):
    write_video(tmp_path / "quiet.mp4", seconds=2, sound=np.zeros(44100, np.float32), rate=22050)
    video = load_video(tmp_path / "quiet.mp4")
    assert video.soundtrack is None and video.sound_left_out == "" and len(video.frames) == 16


def test_a_video_past_the_chat_audio_cap_keeps_its_frames_and_says_its_sound_is_left_out(engine, spoken_clip):
    video = load_video(spoken_clip[0], MediaLimits(max_chat_audio_seconds=1), frames=2)
    assert video.soundtrack is None and len(video.frames) == 2
    assert "sound was left out" in video.sound_left_out and "0.0 minutes" not in video.sound_left_out
    assert video_note(video).endswith("The video's sound is not included.")
    ids = engine.prepare(GenerationRequest([Message("user", [video])])).inputs["input_ids"][0]
    assert int((ids == engine.tokenizer.audio_token_id).sum()) == 0


@pytest.mark.slow  # 150 s of video written and decoded
def test_frames_and_sound_are_decoded_with_bounded_memory(tmp_path):
    """Two and a half minutes of 48 kHz stereo: the native-rate samples alone would be 58 MB as
    float32. Decoding holds the 16 kHz soundtrack (9.6 MB), its blocks and the frames."""
    import tracemalloc

    seconds, rate = 150, 48000
    tone = np.sin(np.arange(seconds * rate) * (2 * np.pi * 440 / rate)).astype(np.float32) * 0.3
    write_video(tmp_path / "long.mp4", seconds, fps=2, sound=np.stack([tone, tone], axis=1), rate=rate)
    del tone
    tracemalloc.start()
    try:
        video = load_video(tmp_path / "long.mp4")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert video.soundtrack is not None and abs(len(video.soundtrack) / 16000 - seconds) < 0.2
    assert peak < 30 * 2**20, f"decoding peaked at {peak / 2**20:.0f} MB"
