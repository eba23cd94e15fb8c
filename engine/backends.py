"""Settings -> the engine: this process's own model (`local`, engine/engine.py) or a remote
OpenAI-compatible server (`openai`, engine/remote.py). Both keep the one engine protocol
(engine/chat_engine.py)."""

from __future__ import annotations

import dataclasses

from core.cpu_threads import in_passing_thread
from core.errors import InvalidRequest
from core.settings import Settings
from media.limits import MediaLimits


def open_engine(settings: Settings, move_to: str | None = None):
    """The engine the settings ask for. `move_to`: load on the CPU, then move the model to that
    device (ZeroGPU, whose GPU exists only inside a call: app/zero_gpu.py)."""
    limits = MediaLimits.from_settings(settings)
    if settings.backend == "openai":
        from engine.remote import RemoteEngine

        if not settings.base_url:
            raise InvalidRequest("--backend openai needs --base-url, e.g. http://gpu-box:8000/v1.", param="base_url")
        return RemoteEngine(
            settings.base_url, settings.remote_api_key, settings.model, limits, concurrency=settings.inflight()
        )
    if settings.backend != "local":
        raise InvalidRequest(f"Unknown backend {settings.backend!r}; use local or openai.", param="backend")
    import torch

    from engine.engine import Engine
    from engine.loading import LoadOptions, load_model

    options = LoadOptions.from_settings(settings)

    def start() -> Engine:
        model, processor, device = load_model(dataclasses.replace(options, device="cpu") if move_to else options)
        if move_to:
            model, device = model.to(move_to), torch.device(move_to)
        engine = Engine(model, processor, device, settings.context_window, limits)
        engine.set_decode(
            settings.decode, settings.static_cache_tokens, settings.static_cache_rows, settings.compile_cache
        )
        engine.enable_batching(settings.max_batch, settings.prefill_chunk_tokens, settings.prefix_cache_tokens)
        return engine

    # its CPU threads end with it (core/cpu_threads.py); but ZeroGPU's CUDA stand-in answers only
    # the thread that imported `spaces` (a torch function mode is per thread): there, this one
    return start() if move_to else in_passing_thread(start)
