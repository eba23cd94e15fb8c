"""The mark of a function that runs the model: `@gpu`. Every event whose function wears it (or
wraps one that does: gr.ChatInterface wraps the chat function in its own) joins one concurrency
group, and app/event_guard.py refuses to serve a page where one does not.

On Hugging Face Spaces (ZeroGPU), GPU work must run inside `@spaces.GPU`; elsewhere that part of
the decorator is a no-op. Each call asks ZeroGPU for the time its own input needs: `spaces` calls
the `duration` function with the event's arguments before it takes a GPU. The estimate is the
app's (app/zero_gpu.py knows media; the UI does not), handed in at start with `estimate_with`."""

from __future__ import annotations

import inspect
import weakref

import gradio as gr

from core.errors import Phi4mmError

try:
    import spaces
except ImportError:  # not on Spaces
    spaces = None

MODEL_GROUP = "gpu"  # the concurrency group of every event that runs the model
DEFAULT_S = 60  # spaces' own default, for a call made before the app handed in its estimate
_estimate = None  # (event name, its arguments by name) -> seconds
_model_functions = weakref.WeakSet()  # what `gpu` returned: a page built and dropped leaves nothing here


def estimate_with(estimate) -> None:
    global _estimate
    _estimate = estimate


def gpu(fn):
    """`fn` runs the model: on ZeroGPU inside a GPU call, everywhere in the model's concurrency group."""
    marked = fn if spaces is None else spaces.GPU(fn, duration=_duration(fn))
    _model_functions.add(marked)
    return marked


def _duration(fn):
    signature = inspect.signature(fn)

    def duration(*args, **kwargs) -> int:
        if _estimate is None:
            return DEFAULT_S
        try:
            return _estimate(fn.__name__, signature.bind_partial(*args, **kwargs).arguments)
        except Phi4mmError as err:  # too long for one call: said before a GPU is taken
            raise gr.Error(str(err), print_exception=False) from None

    return duration


def runs_model(fn) -> bool:
    """Whether `fn` wears `@gpu`, or wraps (`functools.wraps`) a function that does."""
    while fn is not None:
        if fn in _model_functions:
            return True
        fn = getattr(fn, "__wrapped__", None)
    return False


def join_model_group(demo: gr.Blocks, limit: int) -> None:
    """Every event of `demo` that runs the model into one concurrency group, `limit` at once."""
    for event in demo.fns.values():
        if runs_model(event.fn):
            event.concurrency_id, event.concurrency_limit = MODEL_GROUP, limit
