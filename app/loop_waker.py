"""Callbacks for the event loop from another thread, handed over once per burst.

The decode loop's thread wakes every stream it gave a token to, once a round; each
`loop.call_soon_threadsafe` writes to the loop's wake-up socket, so sixteen streams cost sixteen
system calls a round, about 5 % of that thread's time in a 16-stream round (this 2-core CPU, a
py-spy profile of `phi4mm serve`). Here a wake queues its callback and only the first of a
burst, while the loop has not yet run them, wakes the loop.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from typing import Callable


class LoopWaker:
    """`call_soon` from any thread: the callback runs on the loop, in order, as with
    `call_soon_threadsafe`, which raises RuntimeError once the loop has closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = weakref.ref(loop)  # the loop's entry in `_wakers` must not keep it alive
        self._pending: deque[Callable[[], object]] = deque()
        self._lock = threading.Lock()
        self._scheduled = False  # a `_run` is on its way to the loop

    def call_soon(self, callback: Callable[[], object]) -> None:
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise RuntimeError("Event loop is closed")
        self._pending.append(callback)
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # closed meanwhile: nothing will run it
            with self._lock:
                self._scheduled = False
            raise

    def _run(self) -> None:
        # cleared before the queue is read: a callback queued from now on either is read below or
        # schedules a run of its own
        with self._lock:
            self._scheduled = False
        while self._pending:
            callback = self._pending.popleft()
            try:
                callback()
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as err:  # noqa: BLE001 - reported and the rest run, as the loop does
                self._loop().call_exception_handler({"message": "LoopWaker callback failed", "exception": err})


_wakers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def waker_for(loop: asyncio.AbstractEventLoop) -> LoopWaker:
    """The loop's one LoopWaker."""
    with _wakers_lock:
        waker = _wakers.get(loop)
        if waker is None:
            waker = _wakers[loop] = LoopWaker(loop)
        return waker
