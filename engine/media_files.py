"""Reading a media file or upload with the size checks every decoder shares."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import MediaError
from engine.limits import MediaLimits


def check_file(path: Path, limits: MediaLimits, what: str) -> None:
    """Refuse a missing, empty or oversized file before anything reads it."""
    try:
        size = path.stat().st_size
    except OSError:
        raise MediaError(f"The {what} file {path.name!r} could not be opened.") from None
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
