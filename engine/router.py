"""The "mixture of LoRAs": pick the adapter from the media in the whole conversation.

| inputs in the conversation               | adapter |
| text only                                | none    |
| audio, no image                          | speech  |
| image(s) or video frames (± audio)       | vision  |

Both adapters stay loaded; switching flips which one PEFT applies, never reloading weights.
"""

from __future__ import annotations

from contextlib import contextmanager

from core.errors import AdapterMissing
from media.parts import AudioPart, ImagePart, Message, VideoPart

BASE = "base"  # the name reported when no adapter is active
MIXED = "(mixed)"  # the router's state while rows choose their own adapter (never a request's)


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
        self.active: str | None = None  # an adapter, BASE or MIXED; None: unknown until the first activate
        self._row_adapters: list[str] | None = None  # set only during a mixed-batch forward pass
        # Installed once, up front: compiled graphs guard on a module's hooks, and adding them
        # later would force a recompile in the middle of serving
        from peft.tuners.lora import LoraLayer

        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.register_forward_pre_hook(self._inject_row_adapters, with_kwargs=True)

    def activate(self, adapter: str) -> None:
        if adapter == self.active:
            return
        if adapter == BASE:
            self.model.disable_adapters()
        else:
            if adapter not in self.adapters:
                raise AdapterMissing(f"The {adapter!r} LoRA adapter is not loaded; refusing to answer without it.")
            self.model.set_adapter(adapter)
            self.model.enable_adapters()
        self.active = adapter

    @contextmanager
    def mixed(self, adapters: list[str]):
        """One forward pass in which batch row i uses adapters[i] ("base": none), through PEFT's
        mixed-batch path: every LoRA layer gets `adapter_names` from a pre-forward hook."""
        if missing := set(adapters) - set(self.adapters) - {BASE}:
            raise AdapterMissing(f"The {sorted(missing)} LoRA adapter is not loaded; refusing to answer without it.")
        if not self.adapters or len(set(adapters)) == 1:  # one adapter for all rows: the ordinary, cheaper path
            self.activate(adapters[0] if self.adapters else BASE)
            yield
            return
        if self.active != MIXED:  # once per run of mixed steps: toggling PEFT's state costs ms
            self.model.enable_adapters()
            self.active = MIXED  # the next single-request activate sets its adapter again
        self._row_adapters = ["__base__" if a == BASE else a for a in adapters]
        try:
            yield
        finally:
            self._row_adapters = None

    def _inject_row_adapters(self, module, args, kwargs):
        if self._row_adapters is None:
            return None  # an ordinary forward pass: the active adapter applies
        return args, {**kwargs, "adapter_names": self._row_adapters}
