"""The fast path (the slot KV cache, its compiled decode step, one-step lookahead) gives exactly the
reference path's greedy tokens, on CPU where CI runs it: static in the everyday tier, compiled too
in the whole suite (tests/engine/conftest.py's `fast_engine`)."""

from __future__ import annotations

import pytest

from engine.engine import Engine
from engine.loading import LoadOptions
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message, TextPart
from tests.engine.conftest import reference_tokens
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES


def fits_static(engine, prepared) -> bool:
    """Whether the request takes the slot cache (its prompt and answer fit a row)."""
    return engine.static is not None and engine.static.fits(prepared.prompt_tokens, prepared.max_new_tokens)


def request(parts, tokens: int = 24, **params) -> GenerationRequest:
    return GenerationRequest([Message("user", parts)], SamplingParams(max_new_tokens=tokens, **params))


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_fast_greedy_tokens_equal_generate(fast_engine, reference_model, modality):
    req = request(MODALITIES[modality]())
    assert fits_static(fast_engine, fast_engine.prepare(req))  # this request takes the fast path
    text, tokens, final = fast_engine.generate(req)
    assert tokens == reference_tokens(reference_model, fast_engine, req, EXPECTED_ADAPTER[modality])
    assert final.metrics.adapter == EXPECTED_ADAPTER[modality]
    assert text == fast_engine.tokenizer.decode(tokens, skip_special_tokens=True)
    assert fast_engine.static.uncompiled == []  # compiled: it really ran compiled


@pytest.mark.slow  # the compiled engine's cold compile
def test_every_adapter_and_prompt_length_reuse_the_one_compiled_step(slot_engines):
    """The adapter is a tensor the graph reads, and each row's length lives in the cache: no
    request compiles anything after start-up."""
    from torch._dynamo.utils import counters

    compiled = slot_engines("compiled")
    graphs = counters["stats"]["unique_graphs"]
    for modality in MODALITIES:
        for words in (3, 40):
            parts = MODALITIES[modality]() + [TextPart("tell me about the weather in Lisbon " * words)]
            compiled.generate(request(parts, tokens=3))
    assert counters["stats"]["unique_graphs"] == graphs


def test_sampled_tokens_equal_the_dynamic_path(engine, fast_engine):
    req = lambda: request(MODALITIES["audio"](), temperature=0.9, top_p=0.95, top_k=50, seed=7, repetition_penalty=1.1)
    assert fast_engine.generate(req())[1] == engine.generate(req())[1]


def test_the_next_step_is_queued_before_a_token_is_read(fast_engine):
    """The host never waits for the device between tokens (the scheduler's `ahead`, on by default
    on a GPU): the decode step after token k is issued before token k is handed to the reader."""
    fast_engine.enable_batching(4)
    fast_engine.scheduler.ahead = True
    issued = []  # (the token stepped, how many tokens its row had been handed by then)
    step = fast_engine.static.step
    fast_engine.static.step = lambda tokens, rows: (
        issued.append((int(tokens[0]), len(rows[0].tokens))) or step(tokens, rows)
    )
    try:
        answer = fast_engine.generate(request(MODALITIES["text"](), tokens=6))[1]
    finally:
        del fast_engine.static.step
        fast_engine.enable_batching(1)
    assert [token for token, _ in issued] == answer[: len(issued)] and len(issued) >= 5
    assert [handed for _, handed in issued] == list(range(len(issued)))  # token k stepped before it was handed


def test_requests_longer_than_the_static_cache_take_the_dynamic_path(tiny_checkpoint, reference_model):
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    assert engine.set_decode("static", static_tokens=128) == "static"
    for modality in ("text", "image+audio"):  # a short prompt fits; an image's ~700 tokens do not
        req = request(MODALITIES[modality]())
        assert fits_static(engine, engine.prepare(req)) == (modality == "text")
        assert engine.generate(req)[1] == reference_tokens(reference_model, engine, req, EXPECTED_ADAPTER[modality])


def test_auto_is_dynamic_on_cpu_and_unknown_modes_are_refused(tiny_checkpoint):
    engine = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
    assert engine.set_decode("auto") == "dynamic" and engine.static is None
    with pytest.raises(ValueError, match="Unknown decode mode"):
        engine.set_decode("fastest")


def multi_turn() -> GenerationRequest:
    """A photo in turn 1, an answer, then a voice note: the vision adapter over the whole talk."""
    return GenerationRequest(
        [
            Message("user", MODALITIES["image"]()),
            Message("assistant", [TextPart("A small photo with a red square on it.")]),
            Message("user", MODALITIES["audio"]() + [TextPart("And what does this clip say?")]),
        ],
        SamplingParams(max_new_tokens=24),
    )


@pytest.mark.parametrize("path", ["dynamic", "batched"])
def test_multi_turn_equals_generate_on_every_path(path, engine, tiny_checkpoint, reference_model):
    from tests.engine.test_batching import run_together

    expected = reference_tokens(reference_model, engine, multi_turn(), "vision")
    if path == "dynamic":
        tokens = engine.generate(multi_turn())[1]
    else:  # on the static path, decoded in one batch beside a text request
        other = Engine.load(LoadOptions(model=str(tiny_checkpoint), device="cpu"))
        assert other.set_decode("static") == "static"
        other.enable_batching(4)
        tokens = run_together(other, {"multi": multi_turn(), "text": request(MODALITIES["text"]())})["multi"]
        assert other.scheduler.rows_stepped > other.scheduler.steps  # really batched together
        other.scheduler.close()
    assert tokens == expected


def test_multi_turn_equals_generate_on_the_fast_path(fast_engine, engine, reference_model):
    assert fits_static(fast_engine, fast_engine.prepare(multi_turn()))
    assert fast_engine.generate(multi_turn())[1] == reference_tokens(reference_model, engine, multi_turn(), "vision")
