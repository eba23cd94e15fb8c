"""The slot decoder's own aggregate: `streams` mixed requests (text, image, audio, image + audio in
turn, so every bucket runs a mix of adapters) decoded together on the compiled (or static) step,
against one request alone on the same step. Decode steps only: each request's prefill is eager and
outside the clock, as a scheduler would interleave it. Greedy, through each request's sampler."""

from __future__ import annotations

import time

import torch

from engine.request import GenerationRequest, SamplingParams
from engine.sampling import choose_rows
from media.parts import Message
from tooling.inputs import MODALITIES


def slot_tokens_per_s(engine, streams: int, tokens: int) -> float:
    """Aggregate decode tok/s of `streams` rows stepped together for `tokens` steps."""
    kinds, decoder, samplers, ids, logits = list(MODALITIES), engine.static, [], [], []
    with engine.runner.turn(None):
        for slot in range(streams):
            req = GenerationRequest(
                [Message("user", MODALITIES[kinds[slot % len(kinds)]]())], SamplingParams(max_new_tokens=tokens)
            )
            prepared = engine.prepare(req)
            samplers.append(engine.sampler(req, prepared))
            ids.append(prepared.input_ids)
            logits.append(decoder.admit(slot, prepared))
    slots, logits = list(range(streams)), torch.cat(logits)
    try:
        began = time.perf_counter()
        for _ in range(tokens):
            histories = [h if s.reads_history else None for s, h in zip(samplers, ids)]
            chosen = choose_rows(samplers, histories, logits)  # every row's token in one pass
            ids = [torch.cat([h, t.view(1, 1)], dim=1) for h, t in zip(ids, chosen)]
            with engine.runner.turn(None):
                logits = decoder.step(chosen, slots)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        return streams * tokens / (time.perf_counter() - began)
    finally:
        with engine.runner.turn(None):
            for slot in slots:
                decoder.release(slot)
