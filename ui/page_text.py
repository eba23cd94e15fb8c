"""What the page adds around an answer (its metrics line, the stopped mark, error notes), how it
takes them out again before a history goes back to the web glue, how an error reaches the page, a
gradio_client caller and the server's console, and the files it offers for download."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr

from core.errors import Phi4mmError, generation_failed
from ui.options import Shown

log = logging.getLogger(__name__)
WARNING = "⚠️ "
FOOTER = "\n\n<sub>⚙ "
STOPPED = "(stopped)"


def warning(err: Exception) -> str:
    """Our errors carry a message for the user and are logged in one line; anything else is a bug:
    logged with its traceback, and summarised."""
    if isinstance(err, Phi4mmError):
        log.warning("refused a browser request: %s", err)
        return f"{WARNING}{err}"
    log.exception("unexpected error in a browser request")
    return f"{WARNING}{generation_failed(err)}"  # a bug repeats: no "try again"


def refusal(err: Exception) -> gr.Error:
    """`warning(err)` as the gr.Error to raise: Gradio prints a traceback for a gr.Error unless told
    not to, 40 lines in the console for a bad file (`warning` has logged what is worth logging)."""
    return gr.Error(warning(err), print_exception=False)


def with_metrics(shown: Shown) -> str:
    """The metrics line as an API client gets it: a stopped answer says so first."""
    return " · ".join(filter(None, (STOPPED if shown.stopped else "", shown.metrics)))


def page_text(shown: Shown) -> str:
    """An answer as the page shows it: the metrics line in small type under it."""
    line = with_metrics(shown)
    return shown.text + (f"{FOOTER}{line}</sub>" if line else "")


def answers_only(history: list[dict]) -> list[dict]:
    """The chat history less what the page added to it (`page_text`, `warning`); its text
    items as plain strings."""
    turns = []
    for turn in history:
        content = turn.get("content")
        items = []
        for item in content if isinstance(content, list) else [content]:
            if isinstance(item, dict) and item.get("type") == "text":
                item = item.get("text", "")
            if isinstance(item, str):
                if item.startswith(WARNING):
                    continue
                item = item.split(FOOTER)[0]
            items.append(item)
        turns.append({**turn, "content": items})
    return turns


def failed(message: str, request: gr.Request | None):
    """The page shows the message where the answer would be (and stays usable: an exception would
    leave the chat box disabled); an API client (gradio_client, which marks its calls) gets it as
    an exception with the same one line, never as if it were the answer."""
    if from_api(request):
        raise gr.Error(message.removeprefix(WARNING), print_exception=False)
    yield message


def from_api(request: gr.Request | None) -> bool:
    """gradio_client marks its calls; the page's do not carry the mark."""
    return request is not None and request.headers.get("x-gradio-user") == "api"


def text_file(name: str, text: str) -> str:
    """A per-request file for download (its own temporary folder, never shared between users)."""
    path = Path(tempfile.mkdtemp(prefix="phi4mm-")) / name
    path.write_text(text, encoding="utf-8")
    return str(path)
