"""Photos: every common format, EXIF orientation, colour modes, the processor's token counts,
crop budget, several images, and bad input refused with our typed error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from core.errors import MediaError
from engine.request import GenerationRequest
from media.images import load_image
from media.limits import MediaLimits
from media.parts import ImagePart, Message, TextPart
from tooling.inputs import make_photo


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_each_format_decodes(fmt, tmp_path):
    photo = make_photo(320, 200)
    path = tmp_path / f"photo.{fmt.lower()}"
    path.write_bytes(encode(photo, fmt))
    for source in (path, str(path), path.read_bytes()):
        image = load_image(source)
        assert image.mode == "RGB" and image.size == (320, 200)
    if fmt in ("PNG", "BMP", "TIFF"):  # lossless: pixel-exact
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(photo))


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue", "green")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = load_image(data)
    assert image.getpixel((5, 5))[0] > 200 and image.getpixel((5, 5))[2] < 50


def test_exif_orientation_is_applied():
    photo = make_photo(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image = load_image(encode(photo, "JPEG", exif=exif))
    assert image.size == (200, 300)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "CMYK", "I;16", "1"])
def test_colour_modes_become_rgb(mode):
    source = Image.new("RGBA", (20, 10), (255, 0, 0, 0))  # fully transparent red
    if mode in ("RGBA", "LA"):
        image = load_image(encode(source.convert(mode), "PNG"))
        assert image.getpixel((3, 3)) == (255, 255, 255)  # transparency composited on white
        return
    if mode == "P":
        palette = Image.new("P", (20, 10), 0)
        palette.info["transparency"] = 0
        assert load_image(encode(palette, "PNG", transparency=0)).getpixel((1, 1)) == (255, 255, 255)
        return
    converted = make_photo(20, 10).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    image = load_image(encode(converted, fmt))
    assert image.mode == "RGB" and image.size == (20, 10)


def _image_tokens(engine, images, max_crops=None):
    request = GenerationRequest(
        [Message("user", [*(ImagePart(i) for i in images), TextPart("?")])], max_crops=max_crops
    )
    ids = engine.prepare(request).inputs["input_ids"][0]
    return int((ids == engine.tokenizer.image_token_id).sum())


@pytest.mark.parametrize(
    "size, tokens",
    [
        ((448, 448), 545),
        ((1344, 896), 1841),
        ((896, 1344), 1857),
        ((28, 448), 305),
        ((2688, 2688), 9585),
        ((4000, 4000), 9585),
    ],
)
def test_token_counts_equal_the_processor(engine, size, tokens):
    assert _image_tokens(engine, [Image.new("RGB", size, "white")]) == tokens


def test_crop_budget_bounds_tokens(engine):
    big = Image.new("RGB", (2688, 2688), "white")
    counts = {crops: _image_tokens(engine, [big], max_crops=crops) for crops in (1, 4, 16, 36)}
    assert counts[1] < counts[4] < counts[16] < counts[36] == 9585


def test_several_images_per_turn_and_across_turns(engine):
    a, b, c = Image.new("RGB", (448, 448)), Image.new("RGB", (28, 448)), Image.new("RGB", (1344, 896))
    request = GenerationRequest(
        [
            Message("user", [ImagePart(a), ImagePart(b), TextPart("compare")]),
            Message("assistant", [TextPart("they differ")]),
            Message("user", [ImagePart(c), TextPart("and this?")]),
        ]
    )
    prepared = engine.prepare(request)
    ids = prepared.inputs["input_ids"][0]
    assert int((ids == engine.tokenizer.image_token_id).sum()) == 545 + 305 + 1841
    assert prepared.adapter == "vision"


def _png_header_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR (with a valid CRC) claims another size."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    "width, height, match",
    [
        (9000, 9000, r"9000×9000 pixels \(81 MP\); the limit is 64 MP"),  # our cap, from the header
        (100_000, 100_000, r"too many pixels \(over 64 MP\); it may be a decompression bomb"),
    ],  # Pillow's, at open
)
def test_decompression_bomb_is_refused_before_decoding(monkeypatch, width, height, match):
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self) or None)
    with pytest.raises(MediaError, match=match):
        load_image(_png_header_claiming(width, height))
    assert decoded == []


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "empty"),
        (b"this is not an image at all", "could not be decoded"),
        (encode(make_photo(), "JPEG")[:400], "could not be decoded"),  # truncated
        (encode(make_photo(), "PNG")[:60] + b"\x00" * 200, "could not be decoded"),  # corrupt
    ],
)
def test_bad_images_give_our_error(data, match):
    with pytest.raises(MediaError, match=match):
        load_image(data)


def test_wrong_extension_is_read_by_content(tmp_path):
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(encode(make_photo(30, 20), "PNG"))
    assert load_image(path).size == (30, 20)
    (tmp_path / "notes.png").write_text("shopping list")
    with pytest.raises(MediaError):
        load_image(tmp_path / "notes.png")


def test_too_large_and_missing_files(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(make_photo(), "PNG"))
    with pytest.raises(MediaError, match="the limit is 0 MB"):
        load_image(path, MediaLimits(max_file_bytes=1000))
    with pytest.raises(MediaError, match="^missing.png: There is no such file"):
        load_image(tmp_path / "missing.png")
