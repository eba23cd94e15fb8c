"""No request holds the model between two of its tokens: a client that reads slowly (or not at
all for a while) never keeps anyone else waiting, on the batched, the long-context and the
one-at-a-time paths."""

from __future__ import annotations

import threading

import pytest

from engine.engine import Engine
from engine.loading import LoadOptions
from tests.engine.conftest import request
from tests.engine.test_batching import wait_until


def finishes_while_paused(engine: Engine, paused_tokens: int) -> list[int]:
    """Opens a stream, reads one chunk and stops reading; meanwhile a 5-token request must finish."""
    paused = engine.stream(request("image", tokens=paused_tokens))
    next(paused)
    done, result = threading.Event(), []

    def short():
        result.extend(engine.generate(request("text", tokens=5))[1])
        done.set()

    threading.Thread(target=short, daemon=True).start()
    try:
        assert done.wait(60), "a 5-token request waited behind a reader that had stopped reading"
    finally:
        paused.close()
    return result


@pytest.fixture
def batching_engine(tiny_checkpoint):
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    engine.enable_batching(4)
    yield engine
    engine.scheduler.close()


def test_a_long_context_request_does_not_hold_the_batch(batching_engine):
    """Past the 4,096-token long-RoPE switch a request decodes alone, but inside the decode loop,
    one step per round: it no longer takes the engine for its whole answer."""
    engine = batching_engine
    prepared = engine.prepare(request("image", tokens=6000))
    assert prepared.prompt_tokens + prepared.max_new_tokens > engine.runner.longrope_switch_at  # really long
    assert len(finishes_while_paused(engine, 6000)) == 5
    assert wait_until(lambda: engine.scheduler.idle)  # no row left behind


def test_one_at_a_time_engines_interleave_requests(tiny_checkpoint):
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))  # one at a time
    assert len(finishes_while_paused(engine, 400)) == 5


def test_the_static_cache_serves_one_request_the_other_decodes_dynamically(tiny_checkpoint, engine):
    fast = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    fast.set_decode("static")
    assert finishes_while_paused(fast, 400) == engine.generate(request("text", tokens=5))[1]
