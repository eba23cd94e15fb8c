"""Which routes of the web server are open: an allowlist, so that a route nobody has looked at (a
new Gradio version's, say) is closed until someone opens it here.

Open: the API and the server's own routes; the page and the Gradio routes the page and
gradio_client use (config, the queue, uploads, heartbeats, cancelling, streamed microphone chunks);
`/gradio_api/call/<name>` for the events the app makes public (app/event_guard.py), which runs
them through the queue (not its `call/v2/` twin); and `/gradio_api/file=<path>` for a file in
the server's private folder (app/private_folder.py) alone, symlinks resolved: never the working directory, the system's
temporary folder or a URL.

Closed: everything else, among it `/gradio_api/run/` and `/gradio_api/api/` (they run any event,
private ones too, by index and outside the queue; every event is queued, so the page never uses
them), `/gradio_api/proxy=`, the deprecated `/gradio_api/file/`, component server functions, the
monitoring, profiling, run-history and vibe-editing routes.
"""

from __future__ import annotations

import re

from app.private_folder import PrivateFolder

OWN_ROUTES = (
    "/v1/",
    "/health",
    "/metrics",
    "/openapi.json",
    "/tokenize",
    "/detokenize",
)  # /login, /logout: the gate itself
PAGE_FILES = {"/", "/config", "/theme.css", "/favicon.ico", "/robots.txt", "/manifest.json"}
PAGE_FOLDERS = ("/assets/", "/static/", "/svelte/", "/pwa_icon")
GRADIO_ROUTES = {
    "info",
    "openapi.json",
    "queue/join",
    "queue/data",
    "upload",
    "upload_progress",
    "cancel",
    "reset",
    "startup-events",
    "app_id",
}
STREAMED_CHUNK = re.compile(r"stream/[\w-]+(/close)?")  # POST: a microphone chunk of a running event
HEARTBEAT = re.compile(r"heartbeat/[\w-]+")
FILE_ROUTE = "file="
NO_SUCH_ROUTE = "No such endpoint."
NO_SUCH_FILE = "No such file."


class Doors:
    def __init__(self, folder: PrivateFolder, public_events: frozenset[str]):
        self.folder = folder
        self.public_events = public_events

    def refusal(self, method: str, path: str) -> str | None:
        """Why the request may not pass (a 404's message), or None when it may."""
        if path.startswith(OWN_ROUTES) or (path.rstrip("/") or "/") in PAGE_FILES or path.startswith(PAGE_FOLDERS):
            return None
        if not path.startswith("/gradio_api/"):
            return NO_SUCH_ROUTE
        route = path.removeprefix("/gradio_api/")
        if route.startswith(FILE_ROUTE):
            return None if self.folder.holds(route.removeprefix(FILE_ROUTE)) else NO_SUCH_FILE
        route = route.rstrip("/")
        if route in GRADIO_ROUTES or HEARTBEAT.fullmatch(route):
            return None
        if method == "POST" and STREAMED_CHUNK.fullmatch(route):
            return None
        if (name := called_by_name(route)) is not None:
            return None if name in self.public_events else NO_SUCH_ROUTE
        return NO_SUCH_ROUTE


def called_by_name(route: str) -> str | None:
    """`call/<name>[/<event id>]` -> name (Gradio's run-by-name route). Its `call/v2/<name>` twin,
    which takes keyword arguments, answers an unknown keyword with a 500, and gradio_client does
    not use it: closed (None here, never a public name)."""
    parts = route.split("/")
    if len(parts) >= 2 and parts[0] == "call" and parts[1] != "v2":
        return parts[1]
    return None
