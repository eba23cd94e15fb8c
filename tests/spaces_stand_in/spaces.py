"""A stand-in for Hugging Face's `spaces` package, as strict as ZeroGPU: the GPU exists only while
a `@spaces.GPU` function runs, so a model forward pass is refused unless it runs inside such a call,
in its thread or in a thread that call started, while that call is still running. (A thread started
at load, or one left over from an earlier call, has no GPU there.)

Like the real package it must be imported before torch (it refuses otherwise), does its start-up
work when `gr.Blocks.launch` is first called (here: it starts guarding the model's forward), and
calls a `duration` function with the call's own arguments before each call. What it saw goes to
the JSON file named by SPACES_STAND_IN_REPORT, rewritten after each call, for the test to read."""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import os
import sys
import threading

if "torch" in sys.modules:  # the real package fails when CUDA is initialised first; this, when torch is imported
    raise RuntimeError("The `spaces` stand-in was imported after torch: import `spaces` first.")

_ids = itertools.count(1)
_running: set[int] = set()  # the calls in progress
_local = threading.local()  # .call: the call this thread works for
refused: list[str] = []  # what ran outside, for the test to read
durations: list[list] = []  # [event name, the seconds its call asked for], one per call
launched = False  # whether the start-up work at the first `launch()` ran
_start = threading.Thread.start


def _start_with_parent(self):
    self._spaces_call = getattr(_local, "call", None)  # a thread works for the call that started it
    _start(self)


def _run_with_parent(run):
    @functools.wraps(run)
    def inner(self):
        _local.call = getattr(self, "_spaces_call", None)
        run(self)

    return inner


threading.Thread.start = _start_with_parent
threading.Thread.run = _run_with_parent(threading.Thread.run)


def report() -> None:
    if path := os.environ.get("SPACES_STAND_IN_REPORT"):
        with open(path, "w") as file:
            json.dump({"refused": refused, "durations": durations, "launched": launched}, file)


def _start_up() -> None:
    """What the real package does at the first `launch()` (it packs the weights for its GPU
    workers); here: from now on the model's forward is guarded."""
    global launched
    from transformers import Phi4MultimodalForCausalLM

    guard_forward(Phi4MultimodalForCausalLM)
    launched = True
    report()


def _one_launch() -> None:
    import gradio as gr

    launch = gr.Blocks.launch

    @functools.wraps(launch)
    def first_launch(*args, **kwargs):
        gr.Blocks.launch = launch
        _start_up()
        return launch(*args, **kwargs)

    gr.Blocks.launch = first_launch


_one_launch()


def GPU(fn=None, *, duration=None, **_):  # noqa: N802 - the real package's name
    if fn is None:
        return functools.partial(GPU, duration=duration)

    def asked(args, kwargs):
        seconds = duration(*args, **kwargs) if callable(duration) else duration
        durations.append([fn.__name__, seconds])
        report()

    def within(call, step):
        """Runs `step()` as part of `call`, in whichever thread runs it (Gradio may resume a
        generator in another worker thread at every step)."""
        outer, _local.call = getattr(_local, "call", None), call
        try:
            return step()
        finally:
            _local.call = outer

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            asked(args, kwargs)
            call = next(_ids)
            _running.add(call)
            steps = fn(*args, **kwargs)
            try:
                while True:
                    try:
                        item = within(call, lambda: next(steps))
                    except StopIteration:
                        return
                    yield item
            finally:
                within(call, steps.close)
                _running.discard(call)

        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        asked(args, kwargs)
        call = next(_ids)
        _running.add(call)
        try:
            return within(call, lambda: fn(*args, **kwargs))
        finally:
            _running.discard(call)

    return function


def guard_forward(model_class) -> None:
    """Refuses `model_class.forward` outside a running call (and notes it for the test)."""
    forward = model_class.forward

    @functools.wraps(forward)
    def checked(self, *args, **kwargs):
        if getattr(_local, "call", None) not in _running:
            refused.append(threading.current_thread().name)
            report()
            raise RuntimeError("ZeroGPU stand-in: CUDA used outside a @spaces.GPU call")
        return forward(self, *args, **kwargs)

    model_class.forward = checked
