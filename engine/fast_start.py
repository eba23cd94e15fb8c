"""Start-up of the fast path: the slot cache sized, every bucket's decode step compiled (or loaded
from the compile cache), one progress line per graph. The self-check (engine/self_check.py) runs
after it, in `Engine.set_decode`."""

from __future__ import annotations

import logging
import time

from engine.compile_cache import cache_key, compile_cache, default_folder
from engine.memory_budget import free_bytes, kv_bytes_per_token
from engine.slot_decoder import BUCKETS, SlotDecoder, bucket_of

log = logging.getLogger(__name__)  # `serve` prints this logger's lines (app/launch.py)

CUDA_SHARE = 0.5  # of the GPU memory free after loading, for the slot cache (a guess: leaves room for prefills)
CPU_ROWS = 1  # one request on the static cache (each row: more buckets to compile, check); others: dynamic


def slot_rows(engine, capacity: int, wanted: int | None) -> int:
    """Rows of the slot cache: `wanted` (up to a bucket), else on a GPU as many (up to the largest
    bucket) as fit in CUDA_SHARE of free memory, else CPU_ROWS."""
    if wanted:
        return bucket_of(min(wanted, BUCKETS[-1]))
    if engine.device.type != "cuda":
        return CPU_ROWS
    row_bytes = kv_bytes_per_token(engine.model, engine.dtype) * capacity
    fits = int((free_bytes(engine.device) or 0) * CUDA_SHARE // row_bytes)
    return max(b for b in BUCKETS if b <= max(fits, 1))


def start_decoder(engine, mode: str, capacity: int, rows: int | None, folder: str | None) -> SlotDecoder:
    """The slot decoder for `mode` (static or compiled), every graph ready."""
    rows = slot_rows(engine, capacity, rows)
    decoder = SlotDecoder(engine.runner, engine.dtype, engine.device, rows, capacity, mode == "compiled", engine.family)
    if mode != "compiled":
        return decoder
    folder = folder or default_folder()
    key = cache_key(engine.model, engine.device, dtype=engine.dtype, rows=rows, capacity=capacity)
    started = time.perf_counter()
    with compile_cache(folder, key) as warm:
        log.info(
            "compiling the decode step for batch sizes %s (%s); --decode dynamic starts at once, slower",
            ", ".join(map(str, decoder.buckets)),
            "from the compile cache" if warm else f"first start: cached in {folder}",
        )
        with engine.runner.turn(None):
            decoder.warm_up(log.info)
    log.info("decode step compiled in %.1f s", time.perf_counter() - started)
    return decoder
