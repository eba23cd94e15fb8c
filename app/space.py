"""The Hugging Face Spaces entry point's server (space_app.py): the same server as `phi4mm serve`
(app/server.py: the browser app, `/v1`, `/health`, `/metrics`, behind the same front door), run
by Gradio's own `demo.launch()`, as Spaces expects. ZeroGPU needs that call: the `spaces` package
does its start-up work (packing the weights for its GPU workers, reporting to the scheduler) when
`launch()` is first called."""

from __future__ import annotations

import dataclasses
import os
import signal

from core.settings import Settings

SPACE_HOST, SPACE_PORT = "0.0.0.0", 7860  # where a Space's proxy looks for the app


def space_settings() -> Settings:
    """PHI4MM_* variables as everywhere, with a Space's own defaults: listen on every interface, and
    answer to the Space's public host name (which Spaces sets in SPACE_HOST), or the front door
    would refuse every visitor's Host."""
    settings = Settings.from_env()
    if "PHI4MM_HOST" not in os.environ:
        settings = dataclasses.replace(settings, host=SPACE_HOST)
    if "PHI4MM_PORT" not in os.environ:
        settings = dataclasses.replace(settings, port=SPACE_PORT)
    if space_host := os.environ.get("SPACE_HOST"):
        hosts = ",".join(name for name in (settings.allowed_hosts, space_host) if name)
        settings = dataclasses.replace(settings, allowed_hosts=hosts)
    return settings


class OwnRoutesFirst:
    """ASGI: our own routes (the API, /health, /metrics) to `api`, the rest to Gradio's app, as
    `phi4mm serve` has them (Gradio mounted under our app, which answers its routes first)."""

    def __init__(self, gradio_app, api):
        from app.doors import OWN_ROUTES

        self.gradio_app, self.api, self.prefixes = gradio_app, api, OWN_ROUTES

    async def __call__(self, scope, receive, send):
        own = scope["type"] in ("http", "websocket") and scope["path"].startswith(self.prefixes)
        await (self.api if own else self.gradio_app)(scope, receive, send)


def launch_space(settings: Settings, engine=None) -> None:
    """Builds the server and runs it with `demo.launch()` until the process is stopped. The front
    door goes in as the outermost middleware we can give Gradio's app (only its CORS and
    compression layers sit outside it); `launch()` brings the rest: the queue, the file checks."""
    from starlette.middleware import Middleware

    from app.launch import launch_options, warn_if_open, with_key_from_file
    from app.server import build_server

    settings = with_key_from_file(settings)
    server = build_server(settings, engine)
    warn_if_open(settings)
    front_door = Middleware(lambda gradio_app: server.gate(OwnRoutesFirst(gradio_app, server.api)))
    signal.signal(signal.SIGTERM, interrupt)
    try:
        server.web.demo.launch(
            server_name=settings.host,
            server_port=settings.port,
            app_kwargs={"middleware": [front_door], "lifespan": server.lifespan},
            **launch_options(settings, server.web.folder),
        )
    finally:  # the server's files go, whatever stopped it
        server.stop()
        server.web.folder.remove()


def interrupt(signum, frame):
    """A stop signal (`docker stop`, a Space's restart) as Ctrl-C, on which `launch()` closes its
    server and returns; by default it ended the process where it stood."""
    raise KeyboardInterrupt
