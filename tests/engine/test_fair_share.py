"""No request holds the model between two of its tokens: a client that reads slowly (or not at
all for a while) never keeps anyone else waiting, on the batched, the long-context and the
one-at-a-time paths."""

from __future__ import annotations

import threading

import pytest

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message, TextPart
from tests.engine.conftest import request
from tests.engine.test_batching import wait_until
from tooling.inputs import MODALITIES


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


@pytest.mark.parametrize("modality", ["text", "image+audio"])
def test_a_long_prompt_goes_in_by_chunks_between_the_running_rows_steps(tiny_checkpoint, engine, modality):
    """A new request's prompt is prefilled 32 tokens per round (its media all in the first chunk)
    while another request decodes: the running row steps between every two chunks, and both
    answers are token for token what each gives alone (prefilled whole)."""
    chunked = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    chunked.enable_batching(4, prefill_chunk=32)
    events, prefill, step = [], chunked.runner.prefill, chunked.scheduler._padded.step
    chunked.runner.prefill = lambda prepared, cache, end: events.append(("chunk", end)) or prefill(prepared, cache, end)
    chunked.scheduler._padded.step = lambda rows, tokens: events.append(("step", len(rows))) or step(rows, tokens)
    words = "the quick brown fox jumps over the lazy dog " * 20  # ~200 prompt tokens
    new = GenerationRequest(
        [Message("user", [*(p for p in MODALITIES[modality]() if not isinstance(p, TextPart)), TextPart(words)])],
        SamplingParams(max_new_tokens=8),
    )
    running = chunked.stream(request("text", tokens=400))
    first = next(running).token_ids
    answer = chunked.generate(new)[1]
    rest = [t for chunk in running for t in chunk.token_ids]
    chunked.scheduler.close()
    prepared = engine.prepare(new)
    ends = [end for kind, end in events if kind == "chunk" and end <= prepared.prompt_tokens][1:]  # the new one's
    assert len(ends) >= 3 and ends[-1] == prepared.prompt_tokens
    assert ends[0] >= prepared.media_end  # every placeholder in its first chunk
    between = [kinds for kinds in _between_chunks(events)]
    assert all(("step", 1) in kinds for kinds in between)  # the running row stepped between two chunks
    assert answer == engine.generate(new)[1]
    assert first + rest == engine.generate(request("text", tokens=400))[1]


def _between_chunks(events: list) -> list[list]:
    """The events between each two consecutive chunks."""
    at = [i for i, (kind, _) in enumerate(events) if kind == "chunk"][1:]  # the running request's own first
    return [events[a + 1 : b] for a, b in zip(at, at[1:])]
