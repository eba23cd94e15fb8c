"""The "mixture of LoRAs": pick the adapter from the media in the whole conversation.

| inputs in the conversation               | adapter |
| text only                                | none    |
| audio, no image                          | speech  |
| image(s) or video frames (± audio)       | vision  |

Both adapters stay loaded; switching flips which one PEFT applies, never reloading weights.
"""

from __future__ import annotations

from engine.request import AudioPart, ImagePart, Message, VideoPart

BASE = "base"  # the name reported when no adapter is active


def choose_adapter(messages: list[Message]) -> str:
    parts = [part for message in messages for part in message.parts]
    if any(isinstance(part, (ImagePart, VideoPart)) for part in parts):
        return "vision"
    if any(isinstance(part, AudioPart) for part in parts):
        return "speech"
    return BASE


class LoraRouter:
    """Owns the model's active-adapter state. Only the engine's generation slot calls
    `activate`, right before each forward pass, so no request can run on a stale adapter."""

    def __init__(self, model, adapters: tuple[str, ...]):
        self.model = model
        self.adapters = adapters
        self.active: str | None = None  # unknown until the first activate

    def activate(self, adapter: str) -> None:
        if adapter == self.active:
            return
        if adapter == BASE:
            self.model.disable_adapters()
        else:
            if adapter not in self.adapters:
                raise RuntimeError(f"The {adapter!r} LoRA adapter is not loaded; refusing to answer without it.")
            self.model.set_adapter(adapter)
            self.model.enable_adapters()
        self.active = adapter
