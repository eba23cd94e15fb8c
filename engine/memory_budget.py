"""What the engine's caches may take: a token's keys and values at the model's shapes, and the
memory the device has free. The slot cache (engine/fast_start.py) and the prefix cache
(engine/prefix_cache.py) are sized from these."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def kv_bytes_per_token(model, dtype: torch.dtype) -> int:
    """Keys and values of one token over every layer (the released shapes in bf16: 128 KiB)."""
    text = model.config.get_text_config(decoder=True)
    head_dim = text.hidden_size // text.num_attention_heads
    return 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * dtype.itemsize


def free_bytes(device: torch.device) -> int | None:
    """Memory free on `device` now: a GPU's free memory, else the RAM the kernel says is available
    (Linux's MemAvailable: free, plus caches it can drop), no more than the container's limit
    leaves -> None where neither can be read. Never starts CUDA to ask (on ZeroGPU the model's
    load is on a virtual device: CUDA must not start)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] if torch.cuda.is_initialized() else None
    known = [free for free in (_mem_available(), cgroup_headroom()) if free is not None]
    if known:
        return min(known)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not POSIX (Windows)
        return None


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A container's memory limit less what it uses now (cgroup v2, else v1) -> None without a
    limit. /proc/meminfo reports the host's memory inside Docker (`--memory`) or a pod."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),  # v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),  # v1
    ):
        try:
            limit = (root / limit_file).read_text().strip()
            usage = int((root / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit == "max" or int(limit) >= 2**60:  # v1 writes "no limit" as a number near 2**63
            return None
        return max(int(limit) - usage, 0)
    return None
