"""Caps on what one media input may cost, so a bad or hostile file is refused before it is
decoded (not after it has filled memory)."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16000  # the feature extractor's rate; every audio input is resampled to it


@dataclass(frozen=True)
class MediaLimits:
    max_file_bytes: int = 200 * 1024 * 1024  # any one media file or upload
    max_image_pixels: int = 64_000_000  # checked from the header, before decoding (decompression bombs)
    max_crops: int = 36  # dynamic multi-crop budget per image (the processor's default; vLLM uses 16)
    video_frames: int = 16  # frames sampled uniformly over a clip (the report's video evaluation)
    max_video_seconds: float = 3600.0
    max_video_pixels: int = 3840 * 2160  # per frame; 4K at most
    max_chat_audio_seconds: float = 180.0  # one chat turn; longer recordings go to summarisation
    max_task_audio_seconds: float = 1800.0  # transcription / summarisation in one prompt (30 min)
    max_meeting_seconds: float = 4 * 3600.0  # a meeting recording, summarised in segments past 30 min
    # Image and audio tokens one request may carry. Sized (our estimate, not measured on a GPU) so
    # one request cannot exhaust a 16 GB GPU: bf16 weights take ~11.2 GiB, and each token's KV cache
    # 32 layers x 8 KV heads x 128 x 2 x 2 bytes = 128 KiB, so 24,576 tokens take 3 GiB. It still
    # holds 30 minutes of speech in one prompt (12.5 audio tokens a second: 22,500) or two photos at
    # the full 36-crop budget (~9,600 tokens each).
    max_media_tokens: int = 24_576
