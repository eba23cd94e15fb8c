"""Caps on what one media input may cost, so a bad or hostile file is refused before it is
decoded (not after it has filled memory)."""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import DEFAULTS, Settings

SAMPLE_RATE = 16000  # the feature extractor's rate; every audio input is resampled to it


@dataclass(frozen=True)
class MediaLimits:
    """What the settings allow (their defaults by default), and the caps that are not settings."""

    max_file_bytes: int = DEFAULTS.max_upload_mb * 2**20  # any one media file or upload
    max_image_pixels: int = 64_000_000  # checked from the header, before decoding (decompression bombs)
    max_crops: int = DEFAULTS.max_crops  # dynamic multi-crop budget per image
    video_frames: int = DEFAULTS.video_frames  # frames sampled uniformly over a clip
    max_video_seconds: float = 3600.0
    max_video_pixels: int = 3840 * 2160  # per frame; 4K at most
    max_chat_audio_seconds: float = DEFAULTS.max_chat_audio_seconds  # one chat turn
    max_task_audio_seconds: float = 1800.0  # transcription / summarisation in one prompt (30 min)
    max_meeting_seconds: float = 4 * 3600.0  # a meeting recording, summarised in segments past 30 min
    max_media_tokens: int = DEFAULTS.max_media_tokens  # image and audio tokens of one request

    @classmethod
    def from_settings(cls, settings: Settings) -> "MediaLimits":
        return cls(
            max_file_bytes=settings.max_upload_mb * 2**20,
            max_crops=settings.max_crops,
            video_frames=settings.video_frames,
            max_chat_audio_seconds=settings.max_chat_audio_seconds,
            max_media_tokens=settings.max_media_tokens,
        )
