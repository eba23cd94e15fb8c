"""Server-sent events from a blocking iterator, one worker thread per stream: what the audio and
Responses routes still use (chat completions hand off without a thread: app/sse_stream.py)."""

from __future__ import annotations

import threading
from typing import Iterator

import anyio
from fastapi.responses import StreamingResponse


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body iterator. When the client goes away while
    Starlette is sending a chunk, the sending task is cancelled there and the iterator is left
    suspended at its `yield`: its `finally` (which frees the slot) then ran only whenever the
    garbage collector got to it, and sometimes not for minutes."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


async def blocking_events(events: Iterator[str], ticket, cancel: threading.Event):
    """Runs the blocking event stream off the event loop. When the client goes away, Starlette
    cancels this mid-await. Nothing in `finally` may await then (an await in a cancelled scope is
    cancelled again, so the slot would never be given back): it sets `cancel`, which ends the
    generation at its next step, gives the slot back at once, and closes the stream in a thread
    once the step that is still running returns."""
    done, turn = object(), threading.Lock()

    def step():
        with turn:
            return next(events, done)

    def close():
        with turn:
            events.close()

    try:
        while (event := await anyio.to_thread.run_sync(step, abandon_on_cancel=True)) is not done:
            yield event
    finally:
        cancel.set()
        ticket.release()
        threading.Thread(target=close, name="close-stream", daemon=True).start()
