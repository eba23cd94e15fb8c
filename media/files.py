"""Reading a media file or upload with the size checks every decoder shares."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from core.errors import MediaError
from media.limits import MediaLimits


def names_its_file(load):
    """A MediaError raised while `load(source, ...)` reads a file names the file (bytes and
    microphone samples have no name): with several attached, people need to know which failed."""

    @functools.wraps(load)
    def loader(source, *args, **kwargs):
        try:
            return load(source, *args, **kwargs)
        except MediaError as err:
            if isinstance(source, (str, Path)):
                raise MediaError(f"{Path(source).name}: {err}", param=err.param) from None
            raise

    return loader


def check_file(path: Path, limits: MediaLimits, what: str) -> None:
    """Refuse a missing, unreadable, empty or oversized file, or a folder, before anything reads it."""
    if path.is_dir():
        raise MediaError(f"This is a folder, not {'an' if what[0] in 'aeiou' else 'a'} {what} file.")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise MediaError("There is no such file.") from None
    except OSError as err:
        raise MediaError(f"The {what} file could not be opened: {(err.strerror or 'unreadable').lower()}.") from None
    check_size(size, limits, what)


def check_size(size: int, limits: MediaLimits, what: str) -> None:
    if size == 0:
        raise MediaError(f"The {what} file is empty (0 bytes).")
    if size > limits.max_file_bytes:
        raise MediaError(
            f"The {what} file is {size / 2**20:.0f} MB; the limit is {limits.max_file_bytes / 2**20:.0f} MB."
        )


def read_bytes(source: Any, limits: MediaLimits, what: str) -> bytes:
    """A path or bytes -> bytes, refusing empty and oversized files with a clear message."""
    if isinstance(source, (bytes, bytearray)):
        check_size(len(source), limits, what)
        return bytes(source)
    path = Path(source)
    check_file(path, limits, what)
    return path.read_bytes()
