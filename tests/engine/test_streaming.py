"""Streaming: deltas add up, stop strings and end tokens end the answer, sampling is seeded,
and a cancel from another thread stops within one decode step and frees the slot."""

from __future__ import annotations

import threading
import time

import pytest

from engine.engine import Engine
from engine.request import PENDING, GenerationRequest, SamplingParams
from engine.text_stream import IncrementalDetokenizer, StopMatcher
from media.parts import Message, TextPart


def ask(text="Hello, how are you?", **params):
    return GenerationRequest([Message("user", [TextPart(text)])], SamplingParams(**params))


def test_chunks_carry_text_tokens_and_final_metrics(engine):
    chunks = list(engine.stream(ask(max_new_tokens=10)))
    assert all(len(c.token_ids) == 1 for c in chunks)
    assert [c.finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    final = chunks[-1]
    assert final.finish_reason == "length" and len(chunks) == 10
    m = final.metrics
    assert (m.prompt_tokens, m.completion_tokens, m.adapter) == (engine.prepare(ask()).prompt_tokens, 10, "base")
    assert m.ttft_s > 0 and m.tokens_per_s > 0


def test_grad_mode_does_not_leak_to_the_consumer_between_chunks(engine):
    import torch

    stream = engine.stream(ask(max_new_tokens=5))
    next(stream)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    stream.close()


def test_stop_string_truncates_the_answer(engine):
    full, _, _ = engine.generate(ask(max_new_tokens=24))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    text, tokens, final = engine.generate(ask(max_new_tokens=24, stop=(stop,)))
    assert final.finish_reason == "stop"
    assert text == full[: full.index(stop)] and stop not in text
    assert len(tokens) < 24


def test_end_token_stops_and_is_not_shown(engine):
    _, tokens, _ = engine.generate(ask(max_new_tokens=24))
    k = max(i for i, t in enumerate(tokens) if t not in tokens[:i])  # last token seen for the first time
    stopping = Engine(engine.model, engine.processor, engine.device)
    stopping.runner.end_ids = {tokens[k]}  # pretend that token is <|end|>
    text, got, final = stopping.generate(ask(max_new_tokens=24))
    assert final.finish_reason == "stop" and got == tokens[: k + 1]
    assert text == engine.tokenizer.decode(tokens[:k], skip_special_tokens=True)


def test_sampling_is_reproducible_with_a_seed(engine):
    params = dict(max_new_tokens=16, temperature=1.5, top_p=0.95, seed=7)
    first = engine.generate(ask(**params))[1]
    assert engine.generate(ask(**params))[1] == first
    others = {tuple(engine.generate(ask(**{**params, "seed": s}))[1]) for s in range(1, 6)}
    assert len(others | {tuple(first)}) > 1
    # top_k=1 sampling is greedy whatever the temperature
    assert (
        engine.generate(ask(max_new_tokens=16, temperature=1.0, top_k=1, seed=3))[1]
        == engine.generate(ask(max_new_tokens=16))[1]
    )


def test_repetition_penalty_changes_greedy_output(engine):
    plain = engine.generate(ask(max_new_tokens=16))[1]
    penalised = engine.generate(ask(max_new_tokens=16, repetition_penalty=5.0))[1]
    assert plain != penalised
    assert len(set(penalised)) > len(set(plain))


def test_cancel_from_another_thread_stops_within_one_step_and_frees_the_slot(engine):
    request = ask(max_new_tokens=5000)
    chunks, started = [], threading.Event()

    def consume():
        for chunk in engine.stream(request):
            chunks.append(chunk)
            if len(chunks) >= 3:
                started.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(30)
    request.cancel.set()
    seen_at_cancel = len(chunks)
    # a second request, queued behind the first, must run as soon as the slot frees
    second_done = threading.Event()
    second = threading.Thread(target=lambda: (engine.generate(ask(max_new_tokens=3)), second_done.set()))
    second.start()
    consumer.join(30)
    second.join(30)
    assert not consumer.is_alive() and second_done.is_set()
    generated = sum(len(c.token_ids) for c in chunks)
    assert chunks[-1].finish_reason == "cancelled"
    assert generated <= seen_at_cancel + 1  # at most the step already running when cancel arrived
    assert generated < 5000
    assert engine.finished["cancelled"] >= 1


def test_cancel_before_start_generates_nothing(engine):
    request = ask(max_new_tokens=50)
    request.cancel.set()
    chunks = list(engine.stream(request))
    assert len(chunks) == 1 and chunks[0].finish_reason == "cancelled" and chunks[0].token_ids == []


def test_abandoned_stream_frees_the_slot_and_counts_as_cancelled(engine):
    cancelled = engine.finished["cancelled"]
    stream = engine.stream(ask(max_new_tokens=100))
    next(stream)
    stream.close()
    assert engine.finished["cancelled"] == cancelled + 1
    assert engine.runner.slot.acquire(timeout=1)
    engine.runner.slot.release()


def test_incremental_detokenizer_matches_full_decode(engine):
    tok = engine.tokenizer
    text = "Héllo wörld — 你好, emoji 🎉 and numbers 12345!"
    ids = tok(text).input_ids
    detok = IncrementalDetokenizer(tok)
    assert "".join(detok.push(i) for i in ids) == tok.decode(ids)


@pytest.mark.parametrize("pieces", [["Hello ", "ST", "OP more"], list("Hello STOP more"), ["Hello STOP more"]])
def test_stop_matcher_holds_back_split_stop_strings(pieces):
    matcher = StopMatcher(("STOP",))
    out = ""
    for piece in pieces:
        out += matcher.feed(piece)
        assert "S" not in out
        if matcher.stopped:
            break
    assert matcher.stopped and out + matcher.flush() == "Hello "


def test_stop_matcher_releases_a_false_start():
    matcher = StopMatcher(("STOP",))
    assert matcher.feed("ST") == ""
    assert matcher.feed("AR") == "STAR"
    assert not matcher.stopped and matcher.feed("s") == "s" and matcher.flush() == ""


def test_tokens_ready_at_once_come_as_one_chunk(engine):
    """A reader told of each token (the server's) that reads only once the whole answer is ready
    gets it as one chunk: the same text, ids and logprobs as one chunk per token."""
    # a prompt no other test asks: neither run finds it kept (engine/prefix_cache.py), so both
    # prefill it whole and their logprobs agree to the last bit
    text = "Tell me one thing about rivers."
    one_by_one = list(engine.stream(ask(text, max_new_tokens=12, logprobs=2)))
    engine.enable_batching(2)  # the loop decodes on its own thread and tells the reader
    try:
        told, last = [], threading.Event()
        req = ask(text, max_new_tokens=12, logprobs=2)
        req.on_token = lambda final: told.append(final) or (final and last.set())
        stream = engine.stream(req)
        assert next(stream) is PENDING  # the request is in; nothing decoded yet
        assert last.wait(30)
        chunks = [c for c in stream if c is not PENDING]
    finally:
        engine.enable_batching(1)  # the session's engine: one at a time, as the other tests use it
    assert told == [False] * 11 + [True]
    (chunk,) = chunks
    assert chunk.finish_reason == "length" and chunk.text == "".join(c.text for c in one_by_one)
    assert chunk.token_ids == [t for c in one_by_one for t in c.token_ids]
    assert chunk.logprobs == [lp for c in one_by_one for lp in c.logprobs]


def test_the_token_that_completes_a_stop_string_is_told_as_the_last(engine):
    """The loop watches a request's stop strings too: the token that completes one is the last its
    reader is told of (a server sends the last event at once, not on the next flush), no token
    follows it, and the answer is the one the reader's own matcher cuts."""
    pieces = [c.text for c in engine.stream(ask(max_new_tokens=12))]
    k = next(i for i in range(3, 12) if pieces[i].strip() and pieces[i] not in "".join(pieces[:i]))
    engine.enable_batching(2)
    try:
        told, last = [], threading.Event()
        req = ask(max_new_tokens=12, stop=(pieces[k],))
        req.on_token = lambda final: told.append(final) or (final and last.set())
        stream = engine.stream(req)
        assert next(stream) is PENDING
        assert last.wait(30)
        chunks = [c for c in stream if c is not PENDING]
        time.sleep(0.2)  # the loop's next rounds: nothing more for this reader
    finally:
        engine.enable_batching(1)
    assert told == [False] * k + [True]
    assert chunks[-1].finish_reason == "stop" and "".join(c.text for c in chunks) == "".join(pieces[:k])
    assert sum(len(c.token_ids) for c in chunks) == k + 1
