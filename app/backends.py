"""Settings -> the engine behind the conversation service: this process's own model (`local`)
or a remote OpenAI-compatible server (`openai`)."""

from __future__ import annotations

from app.service import ConversationService
from app.settings import Settings
from engine.errors import InvalidRequest


def open_engine(settings: Settings):
    if settings.backend == "openai":
        from engine.remote import RemoteEngine

        if not settings.base_url:
            raise InvalidRequest("--backend openai needs --base-url, e.g. http://gpu-box:8000/v1.", param="base_url")
        return RemoteEngine(settings.base_url, settings.remote_api_key, settings.model, settings.media_limits())
    if settings.backend != "local":
        raise InvalidRequest(f"Unknown backend {settings.backend!r}; use local or openai.", param="backend")
    from engine.engine import Engine

    engine = Engine.load(settings.load_options(), settings.context_window, settings.media_limits())
    engine.set_decode(settings.decode, settings.static_cache_tokens)
    engine.enable_batching(settings.max_batch)
    return engine


def open_service(settings: Settings, on_finish=None, engine=None) -> ConversationService:
    """The service over `engine`, or over the engine the settings describe."""
    return ConversationService(engine or open_engine(settings), settings.mitigation_policy(), on_finish=on_finish)
