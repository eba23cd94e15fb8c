"""Settings -> the engine: this process's own model (`local`, engine/engine.py) or a remote
OpenAI-compatible server (`openai`, engine/remote.py). Both keep the one engine protocol
(engine/protocol.py)."""

from __future__ import annotations

from core.errors import InvalidRequest
from core.settings import Settings
from media.limits import MediaLimits


def open_engine(settings: Settings):
    if settings.backend == "openai":
        from engine.remote import RemoteEngine

        if not settings.base_url:
            raise InvalidRequest("--backend openai needs --base-url, e.g. http://gpu-box:8000/v1.", param="base_url")
        limits = MediaLimits.from_settings(settings)
        return RemoteEngine(
            settings.base_url, settings.remote_api_key, settings.model, limits, concurrency=settings.inflight()
        )
    if settings.backend != "local":
        raise InvalidRequest(f"Unknown backend {settings.backend!r}; use local or openai.", param="backend")
    from engine.engine import Engine
    from engine.loading import LoadOptions

    engine = Engine.load(
        LoadOptions.from_settings(settings), settings.context_window, MediaLimits.from_settings(settings)
    )
    engine.set_decode(settings.decode, settings.static_cache_tokens, settings.static_cache_rows, settings.compile_cache)
    engine.enable_batching(settings.max_batch)
    return engine
