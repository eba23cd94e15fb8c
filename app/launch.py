"""`phi4mm serve`: open the engine once; serve the browser app at `/`, the OpenAI-compatible API
at `/v1`, `GET /health` and `GET /metrics` (Prometheus)."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:  # the heavy imports wait until a server is built: `phi4mm --help` stays fast
    from app.server import WebBuild

log = logging.getLogger(__name__)
M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD = -8, -3, -1  # glibc's mallopt parameter numbers


def launch_options(settings: Settings, folder=None) -> dict:
    """Look and hardening shared by `serve` and the Spaces entry point. Gradio's own path rules
    are the second lock behind app/event_guard.py and app/doors.py: it may serve the private
    folder, and never the working directory (which it allows by default) unless the folder is in it."""
    from ui.app import CSS, THEME

    blocked = [os.getcwd()] if folder is None or not folder.path.startswith(os.getcwd() + os.sep) else []
    return dict(
        theme=THEME,
        css=CSS,
        max_file_size=f"{settings.max_upload_mb}mb",
        enable_monitoring=False,  # no /monitoring endpoint
        allowed_paths=[folder.path] if folder else [],
        blocked_paths=blocked,
        show_error=False,  # unexpected errors show a short message, never a traceback
        ssr_mode=False,
    )


def tune_malloc(arenas: int = 2, mmap_threshold: int = 4 * 2**20, trim_threshold: int = 32 * 2**20) -> None:
    """Two glibc habits that kept freed memory in the process (RSS), and a cost of the cure:
    - each thread gets its own malloc arena; with dozens of server threads decoding media, freed
      memory stays scattered across them and RSS creeps up under load (bench/load.py: +40 MB per
      ~230 requests without the cap, flat with it, same throughput);
    - after a large block is freed, glibc raises its mmap threshold (up to 32 MiB), so the next
      image-sized buffers come from the heap, which fragments and is not given back: 8 photos of
      8000 x 8000 px left RSS 489 MB higher after they were freed; with the threshold fixed at
      4 MiB, 37 MB (and a 490 MB lower peak), measured on the tiny checkpoint.
    Fixing the mmap threshold also fixes glibc's trim threshold at its 128 KiB default (it moved
    with the other): the heap was then shrunk and faulted in again around every decode step's
    logits (0.8 MB a row), 4,097 page faults per 96-token text request and 12-16 % slower than
    an untuned process; kept at 32 MiB, none, and six 8000 x 8000 photos left 18-21 MB
    (tests/app/test_memory_return.py). Blocks over the mmap threshold are still given back.
    Must run before the threads start."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_ARENA_MAX, arenas)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        libc.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        pass


def mount_web(api, web: WebBuild, settings: Settings):
    """The browser app under `/` of `api`, with the file-path check that `demo.launch` would turn
    on: Gradio skips it (`processing_utils._check_allowed`) until `has_launched` is set, which
    `mount_gradio_app` never does."""
    import gradio as gr

    app = gr.mount_gradio_app(api, web.demo, path="/", **launch_options(settings, web.folder))
    web.demo.has_launched = True
    return app


def with_key_from_file(settings: Settings) -> Settings:
    """The settings with `api_key_file`'s key as the key: a key there is not in argv, where `ps`
    shows it to every user of the machine."""
    from core.errors import Phi4mmError

    if not settings.api_key_file:
        return settings
    try:
        with open(os.path.expanduser(settings.api_key_file), encoding="utf-8") as file:
            key = file.readline().strip()
    except OSError as err:
        raise Phi4mmError(f"The API key file {settings.api_key_file} cannot be read: {err.strerror}.") from None
    if not key:
        raise Phi4mmError(f"The API key file {settings.api_key_file} is empty; put the key on its first line.")
    return replace(settings, api_key=key)


def say(line: str) -> None:
    """What `serve` tells the person who started it, without --verbose: stdout, at once."""
    print(f"phi4mm: {line}", flush=True)


def _first_run_note(settings: Settings) -> str:
    """The download is named only when there is one: not for a local folder or a cached model."""
    from app.cli_download import is_cached

    notes = []
    if settings.backend == "local" and not is_cached(settings.model, settings.revision):
        notes.append("downloading about 12 GB first")
    if settings.device != "cpu":
        notes.append("the first start compiles the decode step on a GPU; later starts reuse it")
    return f" ({'; '.join(notes)})" if notes else ""


class _Say(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say(record.getMessage())


def show_compile_progress() -> None:
    """engine/fast_start.py's lines (one per compiled graph: which, how long) printed by `say`."""
    progress = logging.getLogger("engine.fast_start")
    progress.setLevel(logging.INFO)
    progress.propagate = False  # printed once, with or without --verbose
    if not any(isinstance(h, _Say) for h in progress.handlers):
        progress.addHandler(_Say())


def serve(settings: Settings) -> None:
    from app.http_server import GracefulServer
    from app.server import build_server

    settings = with_key_from_file(settings)
    tune_malloc()
    started = time.perf_counter()
    where = f"from {settings.base_url}" if settings.backend == "openai" else f"on {settings.device}"
    say(f"loading {settings.model} {where}{_first_run_note(settings)}...")
    show_compile_progress()
    server = build_server(settings)
    engine = server.web.service.engine
    say(
        f"ready in {time.perf_counter() - started:.0f} s: {engine.device}, "
        f"decode {engine.decode_mode}" + (f" (fell back: {engine.decode_fallback})" if engine.decode_fallback else "")
    )
    app = server.gate(mount_web(server.api, server.web, settings))
    base = f"http://{'[' + settings.host + ']' if ':' in settings.host else settings.host}:{settings.port}"
    say(f"web app:  {base}/")
    say(f"API:      {base}/v1  (OpenAI-compatible; health: {base}/health)")
    if settings.api_key:
        say("both need the API key: a sign-in page in the browser, `Authorization: Bearer` for clients")
    warn_if_open(settings)
    GracefulServer(app, settings.host, settings.port, server.stop, on_exit_now=server.web.folder.remove).run()


def warn_if_open(settings: Settings) -> None:
    if not settings.api_key and settings.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "listening on %s without an API key: anyone who can reach this port can use the model. "
            "Set PHI4MM_API_KEY or --api-key-file.",
            settings.host,
        )
