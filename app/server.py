"""What `phi4mm serve` and the Spaces entry point both serve, built once: the browser app, our own
routes beside it (the API at `/v1`, `GET /health`, `GET /metrics`) and the front door (app/gate.py)
in front of both. Only how they are run differs (app/launch.py: uvicorn; app/space.py: Gradio's
own `launch()`)."""

from __future__ import annotations

import contextlib
import gc
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:  # the heavy imports wait until a server is built: `phi4mm --help` stays fast
    import gradio as gr
    from fastapi import FastAPI

    from app.admission import Admission
    from app.gate import Gate
    from app.metrics import ServerMetrics
    from app.private_folder import PrivateFolder
    from app.service import ConversationService


# How often Gradio's queue looks for work while it has none, and for progress to send. Its own
# values, 1 and 10 ms, woke an idle server 730-880 times a second and kept 8 % of a core busy with
# nobody on the page (a laptop never rests); with these, ~60 wakes and 1.5 %. What it cost a
# request (each wake takes the GIL from the decode thread) was within this 2-core CPU's noise:
# paired runs 0.93-1.12 (bench/RESULTS.md). 20 ms is what an API stream waits between sends;
# 100 ms is Gradio's own value on Windows.
QUEUE_IDLE_POLL_S, PROGRESS_POLL_S = 0.02, 0.1


def build_web(settings: Settings, on_finish=None, engine=None):
    """Engine (`engine`, or the settings') -> conversation service -> the browser app's Blocks (not
    yet launched), its files kept in a private folder and its events checked (app/event_guard.py)
    -> WebBuild."""
    from app.event_guard import guard_events
    from app.private_folder import PrivateFolder
    from app.service import open_service
    from app.web import WebApp
    from ui.app import build_app

    service = open_service(settings, on_finish, engine)  # first: a model download keeps the usual file modes
    # Gradio's telemetry (a version check and usage reports to its servers, sent from gr.Blocks()
    # and launch()) is on unless this says otherwise: nothing leaves the machine unasked.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    folder = PrivateFolder.open(settings)  # before the Blocks: Gradio reads its folder as they are made
    web = WebApp(service, settings, upload_dirs=[folder.path], discard_chunk=folder.discard)
    demo = build_app(web)
    # a bounded queue: when it is full, new requests get a clear "busy" error instead of waiting forever
    demo.queue(max_size=settings.queue_size, default_concurrency_limit=settings.inflight())
    demo._queue.sleep_when_free = QUEUE_IDLE_POLL_S  # tests/app/test_space_app.py: the names are Gradio's
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S
    public_events = guard_events(demo, folder)
    folder.keep_what_is_here()
    folder.sweep_in_background()
    return WebBuild(service, demo, folder, public_events)


@dataclass
class WebBuild:
    service: ConversationService
    demo: gr.Blocks
    folder: PrivateFolder
    public_events: frozenset[str]  # the events a client may call by name


def without_paths(text: str | None) -> str | None:
    """`text` with any absolute file path replaced: /health is open to anyone who reaches the port."""
    return None if text is None else re.sub(r"(?<![\w.])/[^\s'\"]+", "<path>", text)


@dataclass
class Server:
    settings: Settings
    web: WebBuild
    api: FastAPI  # our own routes alone: /v1, /health, /metrics (the browser app is added by the runner)
    admission: Admission
    metrics: ServerMetrics

    def count(self, path: str, status: int) -> None:
        from app.api import ENDPOINTS

        self.metrics.count(ENDPOINTS.get(path.rstrip("/")), status)

    def gate(self, app) -> Gate:
        """The front door in front of `app` (which serves both the browser app and our routes)."""
        from app.doors import Doors
        from app.gate import Gate

        return Gate(app, self.settings, Doors(self.web.folder, self.web.public_events), on_refused=self.count)

    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = self.settings.worker_threads
        yield
        self.web.folder.remove()  # here, not at exit: after a SIGTERM uvicorn re-raises it, and no `finally` runs

    def stop(self) -> None:
        self.admission.close()
        self.web.service.engine.close()


def import_frozen(settings: Settings) -> None:
    """Imports what a server is made of with Python's cycle collector off, then collects once and
    freezes what is left (`gc.freeze`: never walked again); once per process, before the model is
    loaded (app/zero_gpu.py loads it before `build_server`: it calls this first). The imports make
    some 600,000 objects that live as long as the process, and the collector walked them all again
    each time their number grew by a quarter: ten full collections, about 2 s of collecting; now
    one, 0.7 s (`phi4mm serve` ready in 10.1 s against 11.6, the tiny checkpoint on this 2-core
    CPU). Imports only: the model is loaded, compiled and measured against free memory with the
    collector on, so that no garbage holds memory meanwhile."""
    global _frozen
    if _frozen:
        return
    _frozen = True
    gc.disable()
    try:
        import app.api  # noqa: F401 - the API, and under it torch and the grammar library
        import app.web  # noqa: F401
        import ui.app  # noqa: F401 - Gradio

        if settings.backend == "local":  # a remote backend loads no model
            import peft  # noqa: F401 - the adapters'
            from transformers import Phi4MultimodalForCausalLM, Phi4MultimodalProcessor  # noqa: F401

            import engine.engine  # noqa: F401
            import engine.loading  # noqa: F401
    finally:
        try:
            gc.collect()
            gc.freeze()
        finally:
            gc.enable()


_frozen = False  # import_frozen has run in this process


def build_server(settings: Settings, engine=None) -> Server:
    """The engine (`engine`, or the settings') and everything served around it; `settings` already
    holds the key (app/launch.py: with_key_from_file)."""
    import_frozen(settings)
    import importlib.metadata

    from fastapi import FastAPI, Response

    from app import api_errors, openapi
    from app.admission import Admission
    from app.api import build_router
    from app.audio_api import build_audio_router
    from app.metrics import ServerMetrics
    from app.responses_api import build_responses_router
    from app.tokenize_api import build_tokenize_router

    admission = Admission(settings.inflight(), settings.queue_size)
    metrics = ServerMetrics(admission)
    web = build_web(settings, metrics.record_reply, engine)
    metrics.watch(web.service)
    api = FastAPI(docs_url=None, redoc_url=None)
    server = Server(settings, web, api, admission, metrics)
    api.router.lifespan_context = server.lifespan
    api.include_router(build_router(web.service, settings, admission, metrics))
    api.include_router(build_audio_router(web.service, settings, admission, metrics))
    api.include_router(build_responses_router(web.service, settings, admission, metrics))
    api.include_router(build_tokenize_router(web.service, settings, admission, metrics))
    api_errors.install(api, on_error=server.count)

    @api.get("/health")
    async def health():  # on the event loop: it answers however many worker threads are busy
        engine = web.service.engine
        return {
            "status": "stopping" if admission.closed else "ok",
            "model": settings.served_name(),  # never a local path
            "backend": settings.backend,
            "device": str(engine.device),
            "adapters": list(engine.adapters),
            "decode": engine.decode_mode,
            "decode_fallback": without_paths(engine.decode_fallback),
            "finished": dict(engine.finished),
            "tokens_generated": engine.tokens_generated,
            "queued": admission.queued,
            "in_flight": admission.running,
        }

    @api.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    def prometheus():
        return Response(metrics.scrape(), media_type=metrics.content_type)

    openapi.install(api, "phi4mm", importlib.metadata.version("phi4mm"))

    return server
