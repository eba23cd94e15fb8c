"""`phi4mm serve`: load the engine once; serve the browser app at `/` and `GET /health`."""

from __future__ import annotations

import logging

from app.settings import Settings

log = logging.getLogger(__name__)


def build_web(settings: Settings):
    """Engine -> conversation service -> the browser app's Blocks (not yet launched)."""
    from app.service import ConversationService
    from app.web import WebApp
    from engine.engine import Engine
    from ui.app import build_app

    engine = Engine.load(settings.load_options(), settings.context_window, settings.media_limits())
    service = ConversationService(engine, settings.mitigation_policy())
    demo = build_app(WebApp(service, settings), settings.max_crops, settings.video_frames)
    # a bounded queue: when it is full, new requests get a clear "busy" error instead of waiting forever
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=1)
    return service, demo


def launch_options(settings: Settings) -> dict:
    """Look and hardening shared by `serve` and the Spaces entry point."""
    from ui.app import CSS, THEME

    return dict(
        theme=THEME,
        css=CSS,
        max_file_size=f"{settings.max_upload_mb}mb",
        enable_monitoring=False,  # no /monitoring endpoint
        allowed_paths=[],  # nothing beyond what the app itself serves
        show_error=False,  # unexpected errors show a short message, never a traceback
        ssr_mode=False,
    )


def serve(settings: Settings) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI

    from app.api import build_router

    service, demo = build_web(settings)
    api = FastAPI(docs_url=None, redoc_url=None)
    api.include_router(build_router(service, settings))

    @api.get("/health")
    def health():
        engine = service.engine
        return {"status": "ok", "model": settings.model, "device": str(engine.device),
                "adapters": list(engine.router.adapters), "finished": dict(engine.finished),
                "tokens_generated": engine.tokens_generated}

    app = gr.mount_gradio_app(api, demo, path="/", **launch_options(settings))
    log.info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
