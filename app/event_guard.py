"""The browser app's events, held at Gradio's one way into them.

Every event, whatever route brought it (the queue, a call by name, a streamed chunk) and whatever
its shape, runs through `Blocks.process_api`. Checks made there cover events nobody has tested
yet, where checks per route or per event did not: Gradio's own input check stops at the first
dict with a `"path"`, so a FileData nested in another one's `value` (an example or option click)
was never checked, went into the history, and came back out as a copy of any server file.

- Every path a client names, at any depth of the inputs or of the event's own data, must be a file
  in the server's private folder (app/private_folder.py): one it wrote or received. Anything else
  is refused with the same words whether or not such a file exists, before Gradio opens or copies
  it, so an answer tells nothing about the server's disk either.
- Every event that runs on the server goes through the queue: its bound and concurrency groups
  hold for all of them, and the routes that skip the queue (`/gradio_api/run/`, `/api/`) have no
  event left to serve, so the front door closes them (app/doors.py).
- Every event that runs the model (its function wears ui/gpu.py's `@gpu`) is in the model's one
  concurrency group, and only those are: a page that breaks this is refused at start, since one
  such event outside the group would run beside the group's, past the limit.
- The names a client may call (`/gradio_api/call/<name>`) are read from the events themselves:
  those the page marks public.
"""

from __future__ import annotations

import inspect
from typing import Any, Iterator

import gradio as gr

from app.private_folder import PrivateFolder
from ui.gpu import MODEL_GROUP, runs_model

NOT_OURS = "A file in this request was not uploaded to this server; attach it again."


def guard_events(demo: gr.Blocks, folder: PrivateFolder) -> frozenset[str]:
    """Installs the checks on `demo` (queued, before it is mounted) -> the event names callable by name."""
    strays = [fn.api_name for fn in demo.fns.values() if runs_model(fn.fn) != (fn.concurrency_id == MODEL_GROUP)]
    if strays:
        raise RuntimeError(f"events in the wrong concurrency group (`@gpu` runs the model): {', '.join(strays)}")
    for fn in demo.fns.values():
        if fn.fn is not None and not fn.queue:  # (a JavaScript-only event never reaches the server)
            fn.queue = True
        if fn.concurrency_id != MODEL_GROUP:
            # a quick step shows no progress marks on its outputs: a queued one sets the chatbot
            # pending, which flashed an empty "Loading content" answer under each finished one
            fn.show_progress = "hidden"
    process_api = demo.process_api
    parameters = inspect.signature(process_api)

    async def checked_process_api(*args, **kwargs):
        call = parameters.bind(*args, **kwargs).arguments
        if call.get("iterator") is None:  # a generator's later steps take no inputs (Gradio drops them)
            for path in named_paths([call.get("inputs"), getattr(call.get("event_data"), "_data", None)]):
                if not folder.holds(path):
                    raise gr.Error(NOT_OURS, print_exception=False)
                folder.used(path)
        return await process_api(*args, **kwargs)

    demo.process_api = checked_process_api
    push = demo._queue.push

    async def checked_push(body, *args, **kwargs):  # Gradio looks the index up unchecked: a KeyError, a 500
        if body.fn_index is not None and body.fn_index not in demo.fns:
            return False, "No such event.", "error"
        return await push(body, *args, **kwargs)

    demo._queue.push = checked_push
    return frozenset(fn.api_name for fn in demo.fns.values() if fn.fn is not None and fn.api_visibility == "public")


def named_paths(data: Any) -> Iterator[str]:
    """Every `"path"` value in `data`, at any depth: a FileData's, and one hidden inside another.
    A `"path"` that is not a string is yielded too, so that it is refused rather than skipped."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "path" in item and item["path"] is not None:
                yield item["path"]
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
