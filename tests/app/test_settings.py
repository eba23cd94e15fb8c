"""The one settings object: defaults, PHI4MM_* environment variables, then explicit flags."""

from __future__ import annotations

import pytest

from core.settings import Settings
from engine.loading import LoadOptions


def test_precedence(monkeypatch):
    assert Settings().model == "microsoft/Phi-4-multimodal-instruct" and Settings().host == "127.0.0.1"
    monkeypatch.setenv("PHI4MM_PORT", "9000")
    monkeypatch.setenv("PHI4MM_QUANTIZE", "4bit")
    monkeypatch.setenv("PHI4MM_CONTEXT_WINDOW", "8192")
    settings = Settings.from_env(quantize="8bit", model=None)
    assert (settings.port, settings.quantize, settings.context_window) == (9000, "8bit", 8192)
    assert settings.model == "microsoft/Phi-4-multimodal-instruct"  # None means "not given"
    options = LoadOptions.from_settings(settings)
    assert (options.quantize, options.model) == ("8bit", settings.model)


def test_environment_values_take_their_fields_types(monkeypatch):
    monkeypatch.setenv("PHI4MM_METRICS_PUBLIC", "off")
    monkeypatch.setenv("PHI4MM_MAX_INFLIGHT", "8")
    monkeypatch.setenv("PHI4MM_MAX_CHAT_AUDIO_SECONDS", "60")
    monkeypatch.setenv("PHI4MM_API_KEY", "12345")  # a str field keeps digits as text
    settings = Settings.from_env()
    assert settings.metrics_public is False and settings.max_inflight == 8
    assert settings.max_chat_audio_seconds == 60 and settings.api_key == "12345"


def test_a_wrong_environment_value_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("PHI4MM_PORT", "eighty")
    with pytest.raises(ValueError, match="PHI4MM_PORT='eighty' is not a valid port"):
        Settings.from_env()


def test_every_default_has_one_home():
    """What media limits, load options and requests assume when nobody says comes from Settings."""
    from engine.request import SamplingParams
    from media.limits import MediaLimits

    defaults, limits = Settings(), MediaLimits()
    assert (limits.max_crops, limits.video_frames, limits.max_media_tokens) == (
        defaults.max_crops,
        defaults.video_frames,
        defaults.max_media_tokens,
    )
    assert limits.max_file_bytes == defaults.max_upload_mb * 2**20
    assert SamplingParams().max_new_tokens == defaults.max_new_tokens
    assert LoadOptions().model == defaults.model and LoadOptions().quantize == defaults.quantize
