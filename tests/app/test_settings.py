"""The one settings object: defaults, PHI4MM_* environment variables, then explicit flags."""

from __future__ import annotations

import subprocess

import pytest

from core.settings import Settings
from engine.loading import LoadOptions
from tooling.server import PHI4MM


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


def test_a_negative_number_or_an_impossible_port_is_refused_by_name_however_it_comes(monkeypatch):
    """A negative budget once reached the engine (a prefix cache of -1 tokens failed every request
    with a 500): every number here is a count, a size or a time."""
    monkeypatch.setenv("PHI4MM_PREFIX_CACHE_TOKENS", "-1")
    with pytest.raises(ValueError, match=r"prefix_cache_tokens \(PHI4MM_PREFIX_CACHE_TOKENS\) is -1"):
        Settings.from_env()
    monkeypatch.delenv("PHI4MM_PREFIX_CACHE_TOKENS")
    for field in ("max_batch", "login_hours", "static_cache_rows"):
        with pytest.raises(ValueError, match=field):
            Settings.from_env(**{field: -1})
    with pytest.raises(ValueError, match="login_hours"):
        Settings.from_env(login_hours=float("nan"))
    with pytest.raises(ValueError, match="a TCP port is 0-65535"):
        Settings.from_env(port=99999)
    assert Settings.from_env(prefix_cache_tokens=0, max_inflight=None).prefix_cache_tokens == 0


def test_the_cli_refuses_a_wrong_setting_in_one_line(tmp_path):
    run = subprocess.run(
        [PHI4MM, "serve", "--model", str(tmp_path), "--max-batch", "-2"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "phi4mm: max_batch (PHI4MM_MAX_BATCH) is -2; it cannot be negative."


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
