"""On Hugging Face Spaces (ZeroGPU), GPU work must run inside `@spaces.GPU`; elsewhere the
decorator is a no-op. Each call asks ZeroGPU for the time its own input needs: `spaces` calls the
`duration` function with the event's arguments before it takes a GPU. The estimate is the app's
(app/zero_gpu.py knows media; the UI does not), handed in at start with `estimate_with`."""

from __future__ import annotations

import inspect

import gradio as gr

from core.errors import Phi4mmError

try:
    import spaces
except ImportError:  # not on Spaces
    spaces = None

DEFAULT_S = 60  # spaces' own default, for a call made before the app handed in its estimate
_estimate = None  # (event name, its arguments by name) -> seconds


def estimate_with(estimate) -> None:
    global _estimate
    _estimate = estimate


def gpu(fn):
    if spaces is None:
        return fn
    signature = inspect.signature(fn)

    def duration(*args, **kwargs) -> int:
        if _estimate is None:
            return DEFAULT_S
        try:
            return _estimate(fn.__name__, signature.bind_partial(*args, **kwargs).arguments)
        except Phi4mmError as err:  # too long for one call: said before a GPU is taken
            raise gr.Error(str(err), print_exception=False) from None

    return spaces.GPU(fn, duration=duration)
