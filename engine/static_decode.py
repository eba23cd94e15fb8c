"""The fast path's modes (the slot cache and its step: engine/slot_decoder.py).

Start-up cost, measured at full size on an H200 before the slot cache (bench/RESULTS.md): compiling
the decode step took about a minute per graph (52.7 s base, 60.4 s vision), and gave 180 tok/s
against the dynamic path's 51. There is now one graph per batch-size bucket, whatever the adapters,
and a second start loads them from the compile cache (engine/compile_cache.py).

Modes (`Settings.decode`): `compiled`, `static` (the same path, eager; no compile wait),
`dynamic` (transformers' growing DynamicCache, eager), `auto` (compiled on CUDA, dynamic on CPU).
Requests whose prompt plus answer exceed the static cache fall back to the dynamic path, which
also handles the long-RoPE switch at 4,096 tokens.
"""

from __future__ import annotations

import torch

MODES = ("auto", "compiled", "static", "dynamic")


def resolve_mode(mode: str, model, device: torch.device) -> str:
    if mode not in MODES:
        raise ValueError(f"Unknown decode mode {mode!r}; use one of {', '.join(MODES)}.")
    if mode != "auto":
        return mode
    # bitsandbytes layers do not compile to one graph; on a CPU the compile wait outweighs the gain
    quantized = getattr(model, "hf_quantizer", None) is not None
    return "compiled" if device.type == "cuda" and not quantized else "dynamic"
