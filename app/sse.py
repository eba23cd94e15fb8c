"""Server-sent events for the routes that stream besides chat completions (a transcript, a
Responses API answer): one event's text, and the error event a stream ends with when something
fails after its response has started (it cannot become an error status any more)."""

from __future__ import annotations

import json
import logging

from app.api_errors import error_body
from core.errors import InvalidRequest, Phi4mmError

log = logging.getLogger(__name__)


def event(body: dict, name: str | None = None) -> str:
    """One event; `name` is its `event:` line (the Responses API names each event by its type)."""
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(body)}\n\n"


def stream_error(err: Exception) -> dict:
    """OpenAI's error body for what went wrong; a bug is logged and described in no detail."""
    if isinstance(err, Phi4mmError):
        return error_body(str(err), "invalid_request_error" if isinstance(err, InvalidRequest) else "server_error")
    log.error("an answer failed while streaming", exc_info=err)
    return error_body("Generating this answer failed on the server.", "server_error")
