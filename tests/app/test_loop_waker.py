"""app/loop_waker.py: callbacks from another thread reach the loop in order, a burst of them with
one hand-over, a failing one reported without stopping the rest."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

from app.loop_waker import waker_for


def _from_another_thread(fn) -> None:
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()


def test_a_burst_runs_in_order_on_the_loop_with_one_hand_over():
    async def main():
        loop = asyncio.get_running_loop()
        waker = waker_for(loop)
        assert waker_for(loop) is waker
        handed, ran, done = [], [], asyncio.Event()
        threadsafe = loop.call_soon_threadsafe
        loop.call_soon_threadsafe = lambda callback, *args: (handed.append(callback), threadsafe(callback, *args))[1]

        def burst():  # the loop cannot run between these: it waits for this thread to end
            for i in range(16):
                waker.call_soon(lambda i=i: ran.append((i, threading.current_thread())))
            waker.call_soon(done.set)

        _from_another_thread(burst)
        await asyncio.wait_for(done.wait(), 5)
        assert [i for i, _ in ran] == list(range(16))
        assert {thread for _, thread in ran} == {threading.current_thread()}
        assert len(handed) == 1
        ran.clear()
        done.clear()
        _from_another_thread(burst)  # the next burst is handed over again
        await asyncio.wait_for(done.wait(), 5)
        assert len(ran) == 16 and len(handed) == 2

    asyncio.run(main())


def test_a_failing_callback_is_reported_and_the_rest_run():
    async def main():
        loop = asyncio.get_running_loop()
        reported, ran, done = [], [], asyncio.Event()
        loop.set_exception_handler(lambda _, context: reported.append(context["exception"]))

        def cancelled():
            raise asyncio.CancelledError

        def burst():
            waker = waker_for(loop)
            waker.call_soon(lambda: 1 / 0)
            waker.call_soon(cancelled)
            waker.call_soon(lambda: ran.append("after"))
            waker.call_soon(done.set)

        _from_another_thread(burst)
        await asyncio.wait_for(done.wait(), 5)
        assert ran == ["after"]
        assert [type(err) for err in reported] == [ZeroDivisionError, asyncio.CancelledError]

    asyncio.run(main())


def test_a_closed_loop_refuses_as_call_soon_threadsafe_does():
    loop = asyncio.new_event_loop()
    waker = waker_for(loop)
    waker.call_soon(lambda: None)  # a hand-over on its way when the loop closes
    loop.close()
    for _ in range(2):
        with pytest.raises(RuntimeError):
            waker.call_soon(lambda: None)


def test_a_waker_keeps_no_loop_alive():
    loop = asyncio.new_event_loop()
    waker_for(loop).call_soon(lambda: None)
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None
