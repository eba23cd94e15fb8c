"""Speech in every format people send, microphone arrays at any rate, and bad audio refused
with our typed error; 60 s of audio costs the processor's 750 tokens; fast features match."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import Phi4MultimodalFeatureExtractor

from core.errors import MediaError
from engine.request import GenerationRequest
from media.audio import load_audio
from media.audio_features import FastLogMelExtractor
from media.limits import MediaLimits
from media.parts import AudioPart, Message
from tooling.inputs import encode_audio, make_tone, speak, write_video


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Two seconds or so of espeak-ng speech at 22,050 Hz."""
    return speak("The quick brown fox jumps over the lazy dog.", tmp_path_factory.mktemp("speech") / "fox.wav")


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "mp3", "m4a", "mp4", "aac", "webm"])
def test_each_format_decodes_to_16k_mono(speech, fmt, tmp_path):
    data = encode_audio(speech, 22050, fmt)
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(data)
    for source in (path, data):
        part = load_audio(source)
        assert part.samples.dtype == np.float32 and part.samples.ndim == 1
        # codecs add priming/padding of a few tens of ms at most
        assert part.seconds == pytest.approx(len(speech) / 22050, abs=0.15)
        assert np.abs(part.samples).max() > 0.05


def test_lossless_decoding_matches_the_resampled_source(speech):
    part = load_audio(encode_audio(speech, 22050, "flac"))
    direct = load_audio((speech, 22050))
    assert np.allclose(part.samples, direct.samples, atol=1e-3)


@pytest.mark.parametrize(
    "source, seconds",
    [
        ((make_tone(1.0, rate=44100), 44100), 1.0),  # float at 44.1 kHz
        (((make_tone(1.5, rate=8000) * 32767).astype(np.int16), 8000), 1.5),  # int16 at 8 kHz
        ((48000, (make_tone(0.5, rate=48000) * 2**31 * 0.9).astype(np.int32)), 0.5),  # Gradio's (rate, data)
        ((np.stack([make_tone(1.0, rate=32000)] * 2, axis=1), 32000), 1.0),  # stereo frames x channels
        ((np.stack([make_tone(1.0, rate=16000)] * 2, axis=0), 16000), 1.0),  # stereo channels-first
        ((((make_tone(1.0) + 1) * 127).astype(np.uint8), 16000), 1.0),  # 8-bit unsigned PCM
    ],
)
def test_microphone_arrays_at_any_rate(source, seconds):
    part = load_audio(source)
    assert part.seconds == pytest.approx(seconds, abs=1e-3)
    assert 0.2 < np.abs(part.samples).max() < 0.4  # the tone's 0.3 amplitude survived scaling


def test_stereo_is_mixed_down():
    left, right = make_tone(1.0, 440), make_tone(1.0, 880)
    mixed = load_audio((np.stack([left, right], axis=1), 16000)).samples
    assert np.allclose(mixed, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize(
    "source, match",
    [
        ((np.zeros(0, np.float32), 16000), "empty"),
        ((np.zeros(16000, np.float32), 16000), "silent"),
        ((np.full(16000, 1e-6, np.float32), 16000), "silent"),
        ((np.array([0.1, np.nan] * 8000, np.float32), 16000), "NaN"),
        ((make_tone(), 50), "sample rate"),
        (b"", "empty"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt garbage", "could not be decoded|corrupt"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 300, "no audio track|could not be decoded"),
    ],
)
def test_bad_audio_gives_our_error(source, match):
    with pytest.raises(MediaError, match=match):
        load_audio(source)


def test_silent_file_and_truncated_file():
    with pytest.raises(MediaError, match="silent"):
        load_audio(encode_audio(np.zeros(22050, np.float32), 22050, "wav"))
    flac = encode_audio(make_tone(3.0, rate=22050), 22050, "flac")
    with pytest.raises(MediaError):
        load_audio(flac[: len(flac) // 3] + b"\xff" * 50)


def test_video_without_audio_track(tmp_path):
    write_video(tmp_path / "silent_film.mp4", seconds=1)
    with pytest.raises(MediaError, match="no audio track|could not be decoded"):
        load_audio(tmp_path / "silent_film.mp4")


def test_chat_length_cap_points_to_summarisation():
    limits = MediaLimits(max_chat_audio_seconds=60)
    wav = encode_audio(make_tone(90.0, rate=8000), 8000, "wav")
    with pytest.raises(MediaError, match=r"1.5 minutes long; this takes up to 1.0 minutes.*phi4mm summarize"):
        load_audio(wav, limits)
    with pytest.raises(MediaError, match="summarize"):
        load_audio((make_tone(90.0, rate=8000), 8000), limits)
    with pytest.raises(MediaError, match="summarize"):  # containers: PyAV's duration
        load_audio(encode_audio(make_tone(90.0, rate=16000), 16000, "m4a"), limits)
    assert load_audio(wav, limits, max_seconds=limits.max_task_audio_seconds).seconds == pytest.approx(90.0)


def test_length_cap_is_checked_from_the_header_before_decoding(monkeypatch):
    wav = encode_audio(make_tone(300.0, rate=8000), 8000, "wav")
    monkeypatch.setattr(sf, "blocks", lambda *a, **k: pytest.fail("decoded a file the header already ruled out"))
    with pytest.raises(MediaError, match="5.0 minutes"):
        load_audio(wav)


@pytest.mark.parametrize("rate", [2**31 - 1, 1, 400_000])
def test_a_header_no_recorder_writes_is_refused_before_any_buffer_is_sized(rate):
    """The media fuzz test's 19 GB process: a WAV whose header says ~2 GHz passed the length check
    (a second of frames) and sized an 8.6 GB read and a 2 GHz -> 16 kHz resampler from it."""
    wav = bytearray(encode_audio(make_tone(0.5, rate=8000), 8000, "wav"))
    wav[24:32] = struct.pack("<II", rate, rate * 2 % 2**32)  # the fmt chunk's sample rate and byte rate
    with pytest.raises(MediaError, match="header is not valid"):
        load_audio(bytes(wav))


def test_sixty_seconds_cost_750_tokens(engine):
    request = GenerationRequest([Message("user", [AudioPart(make_tone(60.0))])])
    ids = engine.prepare(request).inputs["input_ids"][0]
    assert int((ids == engine.tokenizer.audio_token_id).sum()) == 750


def test_fast_features_match_transformers():
    reference, fast = Phi4MultimodalFeatureExtractor(), FastLogMelExtractor()
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16000 * 75) * 0.1).astype(np.float32)  # 75 s: more than one chunk
    want = reference([audio], sampling_rate=16000, return_tensors="pt")
    got = fast([audio], sampling_rate=16000, return_tensors="pt")
    assert torch.equal(want["audio_embed_sizes"], got["audio_embed_sizes"])
    diff = (want["audio_input_features"] - got["audio_input_features"]).abs()
    assert want["audio_input_features"].shape == got["audio_input_features"].shape
    assert diff.max() < 0.05 and diff.mean() < 1e-4


def test_each_clip_of_a_batch_has_the_features_it_has_alone():
    """The engine encodes each clip alone (engine/audio_clips.py), so each clip's frames in a
    batch must be bit-for-bit the frames it gets alone, and close to transformers' batched ones."""
    reference, fast = Phi4MultimodalFeatureExtractor(), FastLogMelExtractor()
    audio = (np.random.default_rng(1).standard_normal(16000 * 3) * 0.1).astype(np.float32)
    pair = [audio[:16000], audio[:24000]]
    batch = fast(pair, sampling_rate=16000, return_tensors="pt")
    want = reference(pair, sampling_rate=16000, return_tensors="pt")
    assert torch.equal(batch["audio_attention_mask"], want["audio_attention_mask"])
    for row, clip in enumerate(pair):
        alone = fast([clip], sampling_rate=16000, return_tensors="pt")["audio_input_features"][0]
        assert torch.equal(batch["audio_input_features"][row, : len(alone)], alone)
        assert not batch["audio_input_features"][row, len(alone) :].any()  # log 1: nothing past the clip
        diff = (want["audio_input_features"][row, : len(alone)] - alone).abs()
        assert diff.max() < 0.05 and diff.mean() < 1e-4


def test_unsupported_codec_and_wrong_extension(speech, tmp_path):
    wav = bytearray(encode_audio(speech, 22050, "wav"))
    assert wav[20:22] == b"\x01\x00"  # PCM format tag
    wav[20:22] = b"\x77\x77"  # a codec nobody implements
    with pytest.raises(MediaError, match="could not be decoded|corrupt"):
        load_audio(bytes(wav))
    misnamed = tmp_path / "voice_note.wav"
    misnamed.write_bytes(encode_audio(speech, 22050, "m4a"))  # AAC in MP4, named .wav
    assert load_audio(misnamed).seconds == pytest.approx(len(speech) / 22050, abs=0.15)
