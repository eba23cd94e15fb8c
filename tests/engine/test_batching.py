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

    submitted, submit = [], engine.scheduler.submit
    engine.scheduler.submit = lambda req, *rest: submitted.append(req) or submit(req, *rest)
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
    assert engine.scheduler.rows_stepped > engine.scheduler.steps  # really decoded together
    assert engine.scheduler._padded._logits_block.flat is not None  # their logits on one block (engine/output_head.py)


def test_eager_attention_batches_match_each_request_alone(tiny_checkpoint):
    """Eager attention (a setting, and the fallback where sdpa cannot load) adds its mask to the
    scores: the padded batch must hand it a mask it can add, not sdpa's booleans."""
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu", attention="eager"))
    alone = {modality: engine.generate(request(modality))[1] for modality in MODALITIES}
    engine.enable_batching(8)
    results = run_together(engine, {modality: request(modality) for modality in MODALITIES})
    assert results == alone
    assert engine.scheduler.rows_stepped > engine.scheduler.steps  # really decoded together


def test_stepping_ahead_of_the_read_back_changes_no_token(batched, solo):
    """The GPU's order (the next step queued before the tokens are read back, so a row that just
    ended is stepped once more) gives every row the tokens it gets alone, cancelled rows included."""
    engine, _ = batched
    engine.scheduler.ahead = True
    jobs = {modality: request(modality) for modality in MODALITIES}
    jobs["cancelled"] = request("image", tokens=400)

    def cancel_after_two(name, req, tokens):
        if name == "cancelled" and len(tokens) == 2:
            req.cancel.set()

    results = run_together(engine, jobs, cancel_after_two)
    assert all(results[m] == solo[m] for m in MODALITIES)
    assert 2 <= len(results["cancelled"]) < 400
    assert wait_until(lambda: engine.scheduler.idle)


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
    assert wait_until(lambda: not engine.scheduler.rows)  # the batch empties


def test_a_closed_stream_leaves_the_batch(batched):
    engine, _ = batched
    stream = engine.stream(request("text", tokens=400))
    next(stream)
    stream.close()
    assert wait_until(lambda: not engine.scheduler.rows and not engine.scheduler.pending)
    assert engine.generate(request("audio", tokens=4))[2].finish_reason == "length"  # still serving


@pytest.mark.slow  # the compiled path's cold compile (tests/engine/conftest.py's compiled engine, shared)
def test_every_row_of_a_mixed_batch_decodes_on_the_one_compiled_step(engine, solo, slot_engines, monkeypatch):
    """With the fast path on, a request running alone and the three that join it all decode on the
    slot cache, in one compiled step whatever their adapters: no cache moves between paths, nothing
    compiles while serving, and nobody's tokens change."""
    from torch._dynamo.utils import counters

    fast = slot_engines("compiled")  # every bucket compiled up front
    graphs = counters["stats"]["unique_graphs"]
    dynamic = []  # batched forward passes outside the slot cache (prefills run one row each)
    mixed = fast.router.mixed
    monkeypatch.setattr(
        fast.router, "mixed", lambda adapters: (len(adapters) > 1 and dynamic.append(adapters)) or mixed(adapters)
    )
    buckets, step = [], fast.static.step
    monkeypatch.setattr(
        fast.static, "step", lambda tokens, rows: buckets.append(len(fast.static._slots)) or step(tokens, rows)
    )
    long = request("image", tokens=300)
    expected = engine.generate(request("image", tokens=300))[1]
    fast.enable_batching(8)
    try:
        stream = fast.stream(long)
        tokens = list(next(stream).token_ids)
        others = run_together(fast, {m: request(m) for m in ("text", "audio", "image+audio")})
        tokens += [t for chunk in stream for t in chunk.token_ids]
    finally:
        fast.enable_batching(1)  # the session's engine: one at a time, as the other tests use it
    assert tokens == expected
    assert all(others[m] == solo[m] for m in others)
    assert max(buckets) == 4 and (buckets[-1] == 1 or len(expected) < 300)  # together, then alone again
    assert dynamic == []  # every step on the slot cache
    assert fast.static.uncompiled == []
    assert counters["stats"]["unique_graphs"] == graphs  # nothing compiled while serving
