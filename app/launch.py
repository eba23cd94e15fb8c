"""`phi4mm serve`: open the engine once; serve the browser app at `/`, the OpenAI-compatible API
at `/v1`, `GET /health` and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import ctypes
import logging

from app.settings import Settings

log = logging.getLogger(__name__)
M_ARENA_MAX = -8  # glibc's mallopt parameter number


def build_web(settings: Settings, on_finish=None):
    """Engine -> conversation service -> the browser app's Blocks (not yet launched)."""
    from app.backends import open_service
    from app.web import WebApp
    from ui.app import build_app

    service = open_service(settings, on_finish)
    demo = build_app(WebApp(service, settings), settings.max_crops, settings.video_frames, settings.inflight())
    # a bounded queue: when it is full, new requests get a clear "busy" error instead of waiting forever
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.inflight())
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


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread its own malloc arena; with dozens of server threads decoding media,
    freed memory stays scattered across them and RSS creeps up under load (bench/load.py: +40 MB
    per ~230 requests without this, flat with it, same throughput). Must run before the threads."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def serve(settings: Settings) -> None:
    import gradio as gr
    import uvicorn
    from fastapi import FastAPI, Response

    from app.admission import Admission
    from app.api import build_router
    from app.metrics import ServerMetrics

    limit_malloc_arenas()
    admission = Admission(settings.inflight(), settings.queue_size)
    metrics = ServerMetrics(admission)
    service, demo = build_web(settings, metrics.record_reply)
    api = FastAPI(docs_url=None, redoc_url=None)
    api.include_router(build_router(service, settings, admission, metrics))

    @api.get("/health")
    def health():
        engine = service.engine
        return {"status": "ok", "model": settings.model, "backend": settings.backend, "device": str(engine.device),
                "adapters": list(engine.adapters), "finished": dict(engine.finished),
                "tokens_generated": engine.tokens_generated, "queued": admission.queued}

    @api.get("/metrics")
    def prometheus():
        return Response(metrics.scrape(), media_type=metrics.content_type)

    app = gr.mount_gradio_app(api, demo, path="/", **launch_options(settings))
    log.info("serving on http://%s:%d", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
