"""Continuous batching on the tiny checkpoint: concurrent requests decoded together, with
different adapters in one batch, give exactly the greedy tokens each gives alone; cancelling
one leaves the others unchanged."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest

from engine.engine import Engine
from engine.loading import LoadOptions
from tests.engine.conftest import request
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES


@pytest.fixture
def batched(tiny_checkpoint):
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    engine.enable_batching(8)
    batches = []  # the adapters of every batched forward pass
    mixed = engine.router.mixed
    engine.router.mixed = lambda adapters: batches.append(list(adapters)) or mixed(adapters)
    return engine, batches


def wait_until(condition, seconds: float = 10) -> bool:
    for _ in range(int(seconds * 100)):
        if condition():
            return True
        threading.Event().wait(0.01)
    return False


@contextmanager
def opened(gate: threading.Event):
    """Opens `gate` when the block ends."""
    try:
        yield
    finally:
        gate.set()


def run_together(engine: Engine, jobs: dict, on_chunk=None, hold=None) -> dict:
    """Starts every job at once: `hold` (default: the engine's slot) keeps the decode loop from
    stepping until all are submitted."""
    results = {}

    def run(name, req):
        tokens = []
        for chunk in engine.stream(req):
            tokens += chunk.token_ids
            if on_chunk:
                on_chunk(name, req, tokens)
        results[name] = tokens

    submitted, submit = [], engine.batcher.submit
    engine.batcher.submit = lambda req, *rest: submitted.append(req) or submit(req, *rest)
    threads = [threading.Thread(target=run, args=item) for item in jobs.items()]
    with hold or engine.runner.slot:  # the loop may take the first arrivals, but cannot step until all are in
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(submitted) == len(jobs), seconds=60), "requests were not submitted"
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_mixed_adapter_batches_match_each_request_alone(batched, solo):
    engine, batches = batched
    jobs = {(modality, copy): request(modality) for modality in MODALITIES for copy in range(2)}
    results = run_together(engine, jobs)
    for (modality, _), tokens in results.items():
        assert tokens == solo[modality], modality
    widest = max(batches, key=len)
    assert len(widest) >= 6 and set(widest) == set(EXPECTED_ADAPTER.values())  # base, vision, speech in one pass
    assert engine.batcher.rows_stepped > engine.batcher.steps  # really decoded together


def test_cancelling_one_request_leaves_the_others_unchanged(batched, solo):
    engine, _ = batched
    jobs = {
        "text": request("text"),
        "image": request("image"),
        "audio": request("audio"),
        "cancelled": request("image+audio", tokens=400),
    }

    def cancel_after_three(name, req, tokens):
        if name == "cancelled" and len(tokens) == 3:
            req.cancel.set()

    results = run_together(engine, jobs, cancel_after_three)
    assert all(results[m] == solo[m] for m in ("text", "image", "audio"))
    assert 3 <= len(results["cancelled"]) < 400
    assert engine.finished["cancelled"] == 1
    assert wait_until(lambda: not engine.batcher.rows)  # the batch empties


def test_a_closed_stream_leaves_the_batch(batched):
    engine, _ = batched
    stream = engine.stream(request("text", tokens=400))
    next(stream)
    stream.close()
    assert wait_until(lambda: not engine.batcher.rows and not engine.batcher.pending)
    assert engine.generate(request("audio", tokens=4))[2].finish_reason == "length"  # still serving


@pytest.mark.slow  # 18 s in the everyday tier (the static path's first build)
def test_a_lone_request_moves_between_the_static_cache_and_the_batch(tiny_checkpoint, engine, solo):
    """With the fast path on, a request running alone decodes on the compiled static cache; when
    others join its cache moves into the batch, and back when they are done. None of this
    changes anyone's tokens."""
    from torch._dynamo.utils import counters

    fast = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    fast.set_decode("compiled")  # compiles the decode step up front
    graphs = counters["stats"]["unique_graphs"]
    fast.enable_batching(8)
    widths, mixed = [], fast.router.mixed
    fast.router.mixed = lambda adapters: widths.append(len(adapters)) or mixed(adapters)
    gate = threading.Event()  # the loop stops after 3 lone steps until the others are submitted
    step = fast.static.step
    fast.static.step = lambda *args: (fast.batcher.solo_steps < 3 or gate.wait(60)) and step(*args)
    long = request("image", tokens=300)
    expected = engine.generate(request("image", tokens=300))[1]
    stream = fast.stream(long)
    tokens = list(next(stream).token_ids)
    assert wait_until(lambda: fast.batcher.solo_steps == 3)  # alone: on the static cache
    others = run_together(fast, {m: request(m) for m in ("text", "audio", "image+audio")}, hold=opened(gate))
    assert max(widths) == 4  # then batched with the three others
    solo_steps = fast.batcher.solo_steps
    tokens += [t for chunk in stream for t in chunk.token_ids]
    assert fast.batcher.solo_steps > solo_steps or len(expected) < 300  # alone again once they finished
    assert tokens == expected
    assert all(others[m] == solo[m] for m in others)
    assert fast.static.uncompiled == []
    assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled while serving
