"""`phi4mm serve`: open the engine once; serve the browser app at `/`, the OpenAI-compatible API
at `/v1`, `GET /health` and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import ctypes
import logging
import os
import time

from core.settings import Settings

log = logging.getLogger(__name__)
M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # glibc's mallopt parameter numbers


def build_web(settings: Settings, on_finish=None, engine=None):
    """Engine (`engine`, or the settings') -> conversation service -> the browser app's Blocks
    (not yet launched)."""
    from gradio.utils import get_upload_folder

    from app.service import open_service
    from app.web import WebApp
    from ui.app import build_app

    service = open_service(settings, on_finish, engine)
    web = WebApp(service, settings, upload_dirs=[get_upload_folder()])
    demo = build_app(web)
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


def tune_malloc(arenas: int = 2, mmap_threshold: int = 4 * 2**20) -> None:
    """Two glibc habits that kept freed memory in the process (RSS):
    - each thread gets its own malloc arena; with dozens of server threads decoding media, freed
      memory stays scattered across them and RSS creeps up under load (bench/load.py: +40 MB per
      ~230 requests without the cap, flat with it, same throughput);
    - after a large block is freed, glibc raises its mmap threshold (up to 32 MiB), so the next
      image-sized buffers come from the heap, which fragments and is not given back: 8 photos of
      8000 x 8000 px left RSS 489 MB higher after they were freed; with the threshold fixed at
      4 MiB, 37 MB (and a 490 MB lower peak), measured on the tiny checkpoint.
    Must run before the threads start."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def mount_web(api, demo, settings: Settings):
    """The browser app under `/` of `api`, with the file-path check that `demo.launch` would turn
    on: Gradio skips it (`processing_utils._check_allowed`) until `has_launched` is set, which
    `mount_gradio_app` never does, and then a FileData naming any server path is read and
    served back. With it, an event only takes files that a user uploaded."""
    import gradio as gr

    app = gr.mount_gradio_app(api, demo, path="/", **launch_options(settings))
    demo.has_launched = True
    return app


class GracefulServer:
    """uvicorn, stopping the way Docker expects. On SIGTERM or SIGINT it stops accepting, ends every
    open generation with a clear "shutting down" error (streams get it as their last event) and
    exits within `grace_s`, before Docker's 10 s grace period runs out; a second signal exits at once."""

    def __init__(self, app, settings: Settings, on_stop, grace_s: int = 7):
        import uvicorn

        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=grace_s
        )
        self.server = uvicorn.Server(config)
        self.on_stop = on_stop
        handle_exit = self.server.handle_exit

        def stop(sig, frame):
            if self.server.should_exit:  # the second signal
                log.warning("second stop signal: exiting now")
                os._exit(1)
            log.warning("stopping: no new requests; open generations end now")
            self.on_stop()
            handle_exit(sig, frame)

        self.server.handle_exit = stop

    def run(self) -> None:
        self.server.run()


def say(line: str) -> None:
    """What `serve` tells the person who started it, without --verbose: stdout, at once."""
    print(f"phi4mm: {line}", flush=True)


def serve(settings: Settings) -> None:
    from fastapi import FastAPI, Response

    from app import api_errors
    from app.admission import Admission
    from app.api import ENDPOINTS, build_router
    from app.gate import Gate
    from app.metrics import ServerMetrics
    from ui.app import PUBLIC_EVENTS

    tune_malloc()
    admission = Admission(settings.inflight(), settings.queue_size)
    metrics = ServerMetrics(admission)
    started = time.perf_counter()
    where = f"from {settings.base_url}" if settings.backend == "openai" else f"on {settings.device}"
    say(
        f"loading {settings.model} {where} (the first run downloads about 12 GB; "
        "a compiled decode path takes about a minute per adapter on a GPU)..."
    )
    service, demo = build_web(settings, metrics.record_reply)
    metrics.watch(service)
    engine = service.engine
    say(
        f"ready in {time.perf_counter() - started:.0f} s: {engine.device}, "
        f"decode {engine.decode_mode}" + (f" (fell back: {engine.decode_fallback})" if engine.decode_fallback else "")
    )

    def count(path: str, status: int) -> None:
        metrics.count(ENDPOINTS.get(path.rstrip("/")), status)

    api = FastAPI(docs_url=None, redoc_url=None)
    api.include_router(build_router(service, settings, admission, metrics))
    api_errors.install(api, on_error=count)

    @api.get("/health")
    def health():
        engine = service.engine
        return {
            "status": "stopping" if admission.closed else "ok",
            "model": settings.model,
            "backend": settings.backend,
            "device": str(engine.device),
            "adapters": list(engine.adapters),
            "decode": engine.decode_mode,
            "decode_fallback": engine.decode_fallback,
            "finished": dict(engine.finished),
            "tokens_generated": engine.tokens_generated,
            "queued": admission.queued,
            "in_flight": admission.running,
        }

    @api.get("/metrics")
    def prometheus():
        return Response(metrics.scrape(), media_type=metrics.content_type)

    app = Gate(
        mount_web(api, demo, settings),
        settings,
        PUBLIC_EVENTS,
        on_refused=count,
    )

    def stop():
        admission.close()
        service.engine.close()

    base = f"http://{'[' + settings.host + ']' if ':' in settings.host else settings.host}:{settings.port}"
    say(f"web app:  {base}/")
    say(f"API:      {base}/v1  (OpenAI-compatible; health: {base}/health)")
    if settings.api_key:
        say("both need the API key: a sign-in page in the browser, `Authorization: Bearer` for clients")
    if not settings.api_key and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s without --api-key: anyone who can reach this port can use the model. Set PHI4MM_API_KEY.",
            settings.host,
        )
    GracefulServer(app, settings, stop).run()
