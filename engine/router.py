"""The "mixture of LoRAs": pick the adapter from the media in the whole conversation, by the
adapter table (engine/model_family.py):

| inputs in the conversation               | adapter |
| text only                                | none    |
| audio, no image                          | speech  |
| image(s) or video frames (± audio)       | vision  |

Every adapter stays loaded; switching flips which one PEFT applies, never reloading weights.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from core.errors import AdapterMissing
from engine.fused_lora import stack
from engine.model_family import adapter_for
from media.parts import AudioPart, ImagePart, Message, VideoPart

BASE = "base"  # the name reported when no adapter is active
MIXED = "(mixed)"  # the router's state while rows choose their own adapter (never a request's)


PART_KINDS = {ImagePart: "image", VideoPart: "video", AudioPart: "audio"}  # model_family.INPUT_KINDS


def choose_adapter(messages: list[Message]) -> str:
    kinds = {PART_KINDS.get(type(part)) for message in messages for part in message.parts}
    return adapter_for(kinds) or BASE


class LoraRouter:
    """Owns the model's active-adapter state. Only the engine's generation slot calls
    `activate`, right before each forward pass, so no request can run on a stale adapter.

    A batch whose rows want different adapters runs through PEFT with its adapters switched off
    (each LoRA layer then returns its base layer's output), and a forward hook on every LoRA layer
    adds each row's own adapter's update, given as a (rows, adapters) one-hot tensor: every
    adapter's ranks in two products for the whole batch, the ranks of other adapters zeroed per
    row (engine/fused_lora.py). No per-row Python and no sub-batches: PEFT's own mixed-batch path
    (`adapter_names`) gathered and scattered a sub-batch per adapter in every layer and rebuilt
    its row indices in Python each time (issue 19). The released adapters are plain LoRA (no
    DoRA), which is all this computes."""

    def __init__(self, model, adapters: tuple[str, ...]):
        self.model = model
        self.adapters = adapters
        self.active: str | None = None  # an adapter, BASE or MIXED; None: unknown until the first activate
        self.row_adapters: list[str] | None = None  # row i's adapter, during a mixed-batch forward pass only
        self._one_hots: dict[tuple[str, ...], torch.Tensor] = {}  # a batch make-up -> its rows' weights
        # (rows, len(adapters)) 0/1, column j = adapters[j], during a pass whose rows choose their
        # own adapters: `mixed`, or the slot decoder's rows (engine/slot_decoder.py)
        self._row_weights: torch.Tensor | None = None
        self._row_scales: dict[tuple, torch.Tensor] = {}  # a stacked layout -> its factor, this pass
        # Installed once, up front: compiled graphs guard on a module's hooks, and adding them
        # later would force a recompile in the middle of serving
        from peft.tuners.lora import LoraLayer

        self.layers = [module for module in model.modules() if isinstance(module, LoraLayer)]
        for module in self.layers:
            if any(module.use_dora.values()):
                raise NotImplementedError("DoRA adapters are not supported: Phi-4-multimodal's are plain LoRA.")
            module.register_forward_hook(self._add_row_updates)
            # every adapter's weights side by side (engine/fused_lora.py): a mixed batch's update
            module.phi4mm_stacked = stack(module, adapters)

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
        """One forward pass in which batch row i uses adapters[i] ("base": none)."""
        if missing := set(adapters) - set(self.adapters) - {BASE}:
            raise AdapterMissing(f"The {sorted(missing)} LoRA adapter is not loaded; refusing to answer without it.")
        if not self.adapters or len(set(adapters)) == 1:  # one adapter for all rows: the ordinary, cheaper path
            self.activate(adapters[0] if self.adapters else BASE)
            yield
            return
        self.row_adapters = list(adapters)
        try:
            with self.by_rows(self._one_hot(tuple(adapters))):
                yield
        finally:
            self.row_adapters = None

    @contextmanager
    def by_rows(self, weights: torch.Tensor):
        """One forward pass in which row i takes adapter j's update times weights[i, j] (a one-hot
        row, or zeros for the base model). The adapters are a tensor read inside the pass, not
        Python state, so one compiled graph serves every mix: only its values change between steps.
        Every adapter's update is computed for every row, masked: on a GPU that reads each
        adapter's LoRA weights once per step, whatever the mix."""
        if self.active != MIXED and self.adapters:
            self.model.disable_adapters()
            self.active = MIXED
        self._row_weights = weights
        try:
            yield
        finally:
            self._row_weights = None
            self._row_scales.clear()

    def _one_hot(self, adapters: tuple[str, ...]) -> torch.Tensor:
        """(rows, len(self.adapters)): row i's 1 in its adapter's column (none for a base row),
        made once per batch make-up (a batch keeps its make-up for many steps), in the LoRA
        weights' dtype, on their device."""
        weights = self._one_hots.get(adapters)
        if weights is None:
            weight = self.layers[0].lora_A[self.adapters[0]].weight
            rows = [[float(a == name) for name in self.adapters] for a in adapters]
            if len(self._one_hots) > 256:  # bounded: make-ups are few, but never let them pile up
                self._one_hots.clear()
            weights = self._one_hots[adapters] = torch.tensor(rows, dtype=weight.dtype, device=weight.device)
        return weights

    def _add_row_updates(self, module, args, output):
        """Each row's own adapter's update, in a pass whose rows choose their own (PEFT's adapters
        are off then: the layer gave its base output); else PEFT applied the active adapter itself."""
        if self._row_weights is None:
            return None
        x = args[0]
        weights = self._row_weights[: x.shape[0]]  # a bucket's rows are the first rows of the slots
        if (stacked := module.phi4mm_stacked) is not None:  # every adapter in two products
            return stacked.add_update(x, output, self._scales_for(stacked, weights))
        for j, name in enumerate(self.adapters):  # one adapter, or ones that cannot be stacked
            lora_a, lora_b = module.lora_A[name], module.lora_B[name]
            update = lora_b(lora_a(x.to(lora_a.weight.dtype))).to(output.dtype)
            output = torch.addcmul(output, update, weights[:, j, None, None] * module.scaling[name])
        return output

    def _scales_for(self, stacked, weights: torch.Tensor) -> torch.Tensor:
        """The stacked layer's per-row factor, made once per pass for layers alike. A compiled
        graph makes its own each time (it keeps no tensor of the pass; the compiler merges them)."""
        if torch.compiler.is_compiling():
            return stacked.row_scales(weights)
        scales = self._row_scales.get(stacked.layout)
        if scales is None:
            scales = self._row_scales[stacked.layout] = stacked.row_scales(weights)
        return scales
