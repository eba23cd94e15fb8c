"""The hand-off of a streamed answer from the engine's thread to the event loop (app/sse_stream.py
`Handoff`): its first and last tokens go out at once, the tokens between together, at most every
`FLUSH_EVERY_S`, so that a fast answer does not take the event loop (and the GIL) once per token."""

from __future__ import annotations

import asyncio
import collections
import threading
import time

from app import sse_stream
from app.sse_stream import END, Handoff
from engine.request import PENDING


def test_tokens_between_the_first_and_the_last_go_out_together(monkeypatch):
    monkeypatch.setattr(sse_stream, "FLUSH_EVERY_S", 5.0)  # far longer than the answer takes
    steps, woken = asyncio.run(_answer(tokens=40))
    delivered = [events for _, events in steps]
    assert delivered[0] == ["0 "]  # the first token at once, alone
    assert len(delivered) <= 3, delivered  # one step per token would be 40
    assert [e for events in delivered for e in events] == [f"{i} " for i in range(40)] + [END]
    first_out, last_out = steps[0][0], steps[-1][0]
    assert first_out - woken[0] < 1.0 and last_out - woken[-1] < 1.0  # neither waited out the 5 s


async def _answer(tokens: int):
    """An answer of `tokens` tokens woken 1 ms apart from another thread (the second once the first
    is out) -> (each step of the loop: its time and the events it queued, the times of the first
    and last wakes)."""
    loop = asyncio.get_running_loop()
    handoff = Handoff(pushes=True)
    ready = collections.deque()

    def events():
        while True:
            if not ready:
                yield PENDING
            elif (item := ready.popleft()) is None:
                return
            else:
                yield f"{item} "

    steps, step = [], handoff._step

    def counted_step(*args):
        step(*args)
        steps.append((loop.time(), [handoff.queue.get_nowait() for _ in range(handoff.queue.qsize())]))

    handoff._step = counted_step
    woken = []

    def produce():
        for i in range(tokens):
            ready.append(i)
            woken.append(loop.time())
            handoff.wake(False)
            # the first token's step before the second is ready, however slow the loop is to run
            # it on a loaded machine (the test's bounds say how soon it came)
            while i == 0 and not any(events for _, events in steps) and loop.time() - woken[0] < 5:
                time.sleep(0.001)
            time.sleep(0.001)
        ready.append(None)
        woken.append(loop.time())
        handoff.wake(True)

    handoff.start(events())
    producer = threading.Thread(target=produce)
    producer.start()
    while not any(END in events for _, events in steps):
        await asyncio.sleep(0.01)
    producer.join()
    return [s for s in steps if s[1]], (woken[0], woken[-1])
