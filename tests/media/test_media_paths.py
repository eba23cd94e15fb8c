"""A path that is not a usable media file gets a message for people that names the file and says
what is wrong: no traceback (a folder gave a raw IsADirectoryError) and no Python class names."""

from __future__ import annotations

import re

import pytest

from app.cli import main
from core.errors import MediaError
from media.audio import load_audio
from media.audio_stream import load_long_audio
from media.images import load_image
from media.limits import MediaLimits
from media.video import load_video

LOADERS = {
    "image": load_image,
    "audio": load_audio,
    "video": load_video,
    "recording": lambda p: load_long_audio(p, MediaLimits(), 3600),
}
CLASS_NAME = re.compile(r"\((OSError|UnidentifiedImageError|[A-Z]\w+Error)\)")


@pytest.mark.parametrize("kind", LOADERS)
def test_a_folder_a_missing_file_and_garbage_are_named(kind, tmp_path):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01 not media at all " * 64)
    for name, what in (("holiday", "folder"), ("nowhere.jpg", "no such file"), ("garbage.bin", "")):
        with pytest.raises(MediaError) as caught:
            LOADERS[kind](tmp_path / name)
        message = str(caught.value)
        assert message.startswith(f"{name}: ") and what in message and not CLASS_NAME.search(message), message


@pytest.mark.parametrize("flag", ["--image", "--audio", "--video"])
def test_cli_says_which_file_and_why(flag, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    assert main(["ask", "hi", flag, str(tmp_path / "photos"), "--model", str(tmp_path / "no-model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("phi4mm: photos: This is a folder") and "Traceback" not in err
