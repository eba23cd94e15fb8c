"""What `phi4mm serve` and the Spaces entry point both serve, built once: the browser app, our own
routes beside it (the API at `/v1`, `GET /health`, `GET /metrics`) and the front door (app/gate.py)
in front of both. Only how they are run differs (app/launch.py: uvicorn; app/space.py: Gradio's
own `launch()`)."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app.admission import Admission
    from app.gate import Gate
    from app.launch import WebBuild
    from app.metrics import ServerMetrics


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
        yield
        self.web.folder.remove()  # here, not at exit: after a SIGTERM uvicorn re-raises it, and no `finally` runs

    def stop(self) -> None:
        self.admission.close()
        self.web.service.engine.close()


def build_server(settings: Settings, engine=None) -> Server:
    """The engine (`engine`, or the settings') and everything served around it; `settings` already
    holds the key (app/launch.py: with_key_from_file)."""
    from fastapi import FastAPI, Response

    from app import api_errors
    from app.admission import Admission
    from app.api import build_router
    from app.launch import build_web
    from app.metrics import ServerMetrics

    admission = Admission(settings.inflight(), settings.queue_size)
    metrics = ServerMetrics(admission)
    web = build_web(settings, metrics.record_reply, engine)
    metrics.watch(web.service)
    api = FastAPI(docs_url=None, redoc_url=None)
    server = Server(settings, web, api, admission, metrics)
    api.router.lifespan_context = server.lifespan
    api.include_router(build_router(web.service, settings, admission, metrics))
    api_errors.install(api, on_error=server.count)

    @api.get("/health")
    def health():
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

    @api.get("/metrics")
    def prometheus():
        return Response(metrics.scrape(), media_type=metrics.content_type)

    return server
