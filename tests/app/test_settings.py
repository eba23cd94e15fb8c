"""The one settings object: defaults, PHI4MM_* environment variables, then explicit flags."""

from __future__ import annotations

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
