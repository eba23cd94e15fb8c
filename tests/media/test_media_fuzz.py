"""Fuzzing: random bytes, and valid files with bytes flipped, cut or spliced, go into each
decoder; the only exception that may come out is our MediaError."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import MediaError
from media.audio import load_audio
from media.images import load_image
from media.video import load_video
from tooling.inputs import encode_audio, make_photo, make_tone, write_video


def _png() -> bytes:
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    make_photo(64, 48).save(buffer, format="JPEG")
    return buffer.getvalue()


def _mp4() -> bytes:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_video(path, seconds=1, fps=10, size=(64, 48))
        return path.read_bytes()


SEEDS = {
    "image": [_png(), _jpeg()],
    "audio": [encode_audio(make_tone(0.5, rate=8000), 8000, fmt) for fmt in ("wav", "flac", "mp3", "m4a")],
    "video": [_mp4()],
}
DECODERS = {"image": load_image, "audio": load_audio, "video": load_video}


@st.composite
def mutated(draw, kind):
    data = bytearray(draw(st.sampled_from(SEEDS[kind])))
    for _ in range(draw(st.integers(1, 8))):
        action = draw(st.sampled_from(["flip", "cut", "splice", "zero"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
        elif action == "splice":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        elif action == "zero":
            data[position : position + draw(st.integers(1, 512))] = b"\x00" * 16
    return bytes(data)


def _only_our_error(decoder, data: bytes) -> None:
    try:
        decoder(data)
    except MediaError as err:
        assert str(err)  # a message for the user
    # anything else propagates and fails the test


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", list(DECODERS))
@FUZZ
@given(data=st.data())
def test_random_bytes(kind, data):
    _only_our_error(DECODERS[kind], data.draw(st.binary(min_size=0, max_size=4096)))


@pytest.mark.parametrize("kind", list(DECODERS))
@FUZZ
@given(data=st.data())
def test_mutated_valid_files(kind, data):
    _only_our_error(DECODERS[kind], data.draw(mutated(kind)))
