"""The fast path's modes, and one request at a time on the slot cache (engine/slot_decoder.py).

Start-up cost, measured at full size on an H200 before the slot cache (bench/RESULTS.md): compiling
the decode step took about a minute per graph (52.7 s base, 60.4 s vision), and gave 180 tok/s
against the dynamic path's 51. There is now one graph per batch-size bucket, whatever the adapters,
and a second start loads them from the compile cache (engine/compile_cache.py).

Streaming never makes the host wait on the device between tokens: `StaticRun.advance` queues the
decode step for token k+1 before it reads token k back, so the device is always one step ahead
of the host, which detokenises and sends meanwhile.

Modes (`Settings.decode`): `compiled`, `static` (the same path, eager; no compile wait),
`dynamic` (transformers' growing DynamicCache, eager), `auto` (compiled on CUDA, dynamic on CPU).
Requests whose prompt plus answer exceed the static cache fall back to the dynamic path, which
also handles the long-RoPE switch at 4,096 tokens.
"""

from __future__ import annotations

import torch

from engine.decode import PreparedPrompt
from engine.sampling import Sampler
from engine.slot_decoder import SlotDecoder

MODES = ("auto", "compiled", "static", "dynamic")
SOLO = "solo"  # the slot a lone request decodes in


def resolve_mode(mode: str, model, device: torch.device) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown decode mode {mode!r}; use one of {', '.join(MODES)}.")
    if mode != "auto":
        return mode
    # bitsandbytes layers do not compile to one graph; on a CPU the compile wait outweighs the gain
    quantized = getattr(model, "hf_quantizer", None) is not None
    return "compiled" if device.type == "cuda" and not quantized else "dynamic"


class StaticRun:
    """One request decoding in the decoder's solo slot (a new run takes it over from an old one);
    every call is made in the runner's turn (`runner.turn(None)`: the decoder sets the adapter).

    Invariant: the cache holds every token of `ids`, and `logits` (possibly still being computed
    on the device) predict the next one."""

    def __init__(self, decoder: SlotDecoder, ids: torch.Tensor, sampler: Sampler, logits: torch.Tensor):
        self.decoder = decoder
        self.ids = ids  # (1, n) prompt + tokens so far (the logits processors read it)
        self.sampler = sampler
        self.logits = logits

    @classmethod
    def start(cls, decoder: SlotDecoder, prepared: PreparedPrompt, sampler: Sampler) -> "StaticRun":
        decoder.release(SOLO)
        return cls(decoder, prepared.input_ids, sampler, decoder.admit(SOLO, prepared))

    @classmethod
    def resume(
        cls,
        decoder: SlotDecoder,
        ids: torch.Tensor,
        sampler: Sampler,
        layers: list[tuple[torch.Tensor, torch.Tensor]],
        adapter: str,
    ) -> "StaticRun":
        """From a cache holding all of `ids` but the last token (the batched path's invariant)."""
        decoder.release(SOLO)
        decoder.attach(SOLO, adapter)
        decoder.load(SOLO, layers)
        return cls(decoder, ids, sampler, decoder.step(ids[0, -1:], [SOLO]))

    def advance(self) -> int:
        """Chooses the next token, queues the step after it, and only then reads it back."""
        if self.logits is None:
            raise RuntimeError("the static KV cache is full")  # SlotDecoder.fits keeps requests from here
        token = self.sampler.choose(self.ids, self.logits)
        self.ids = torch.cat([self.ids, token[:, None]], dim=1)
        self.logits = None
        if self.ids.shape[1] < self.decoder.capacity:
            self.logits = self.decoder.step(token, [SOLO])
        return int(token[0])

    def export(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The cache for all of `ids` but the last token; the queued step is dropped and the
        batched path recomputes it."""
        return self.decoder.export(SOLO, self.ids.shape[1] - 1)
