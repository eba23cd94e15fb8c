"""What the engine's caches may take: a token's keys and values at the model's shapes, and the
memory the device has free. The slot cache (engine/fast_start.py) and the prefix cache
(engine/prefix_cache.py) are sized from these."""

from __future__ import annotations

import os

import torch


def kv_bytes_per_token(model, dtype: torch.dtype) -> int:
    """Keys and values of one token over every layer (the released shapes in bf16: 128 KiB)."""
    text = model.config.get_text_config(decoder=True)
    head_dim = text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * dtype.itemsize


def free_bytes(device: torch.device) -> int | None:
    """Memory free on `device` now: a GPU's free memory, else the RAM the kernel says is available
    (Linux's MemAvailable: free, plus caches it can drop) -> None where neither can be read. Never
    starts CUDA to ask (on ZeroGPU the model's load is on a virtual device: CUDA must not start)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] if torch.cuda.is_initialized() else None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not POSIX (Windows)
        return None
