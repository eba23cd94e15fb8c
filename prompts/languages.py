"""The eight languages Phi-4-multimodal handles in speech (model card, report section 3.2),
defined once for the CLI, the UI and the task prompts."""

from __future__ import annotations

SPEECH_LANGUAGES = {
    "en": "English",
    "zh": "Chinese",
    "de": "German",
    "fr": "French",
    "it": "Italian",
    "ja": "Japanese",
    "es": "Spanish",
    "pt": "Portuguese",
}


def resolve_language(name_or_code: str) -> str:
    """'fr', 'FR', 'french' or 'French' -> 'French'; anything else raises ValueError listing the eight."""
    key = name_or_code.strip().lower()
    for code, name in SPEECH_LANGUAGES.items():
        if key in (code, name.lower()):
            return name
    supported = ", ".join(f"{name} ({code})" for code, name in SPEECH_LANGUAGES.items())
    raise ValueError(f"Unsupported speech language {name_or_code!r}; choose one of: {supported}.")
