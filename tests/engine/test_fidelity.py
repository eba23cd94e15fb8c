"""The engine's greedy tokens equal transformers' `generate` for every modality."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from engine.request import GenerationRequest, SamplingParams
from media.parts import Message, TextPart
from tests.engine.conftest import reference_tokens
from tooling.inputs import EXPECTED_ADAPTER, MODALITIES


@pytest.mark.parametrize("modality", list(MODALITIES))
def test_greedy_tokens_equal_generate(engine, reference_model, modality):
    request = GenerationRequest([Message("user", MODALITIES[modality]())], SamplingParams(max_new_tokens=24))
    text, tokens, final = engine.generate(request)
    assert final.metrics.adapter == EXPECTED_ADAPTER[modality]
    assert tokens == reference_tokens(reference_model, engine, request, EXPECTED_ADAPTER[modality])
    assert final.metrics.completion_tokens == len(tokens)
    assert text == engine.tokenizer.decode(tokens, skip_special_tokens=True)


@pytest.mark.slow  # a full forward over 4,000 tokens per new token
def test_tokens_across_the_longrope_switch_equal_full_recomputation(engine):
    """Crossing the original 4,096-token context switches every rotary frequency to the long
    factors. transformers 5.23's `generate` gets this wrong (it drops the cache but then feeds only
    the newest token, so later tokens see no context); the engine recomputes the sequence. Ground
    truth: a fresh full forward over the whole sequence at every step."""
    switch = engine.runner.longrope_switch_at
    assert switch == 4096
    words = "the quick brown fox jumps over the lazy dog " * 600
    ids = engine.tokenizer(words).input_ids[: switch - 8]
    prompt = engine.tokenizer.decode(ids)
    # 8 new tokens: steps before the switch, the switch itself and steps after it (each step below
    # costs a full forward over 4,000 tokens, so no more than that)
    request = GenerationRequest([Message("user", [TextPart(prompt)])], SamplingParams(max_new_tokens=8))
    prepared = engine.prepare(request)
    assert prepared.prompt_tokens + 2 < switch < prepared.prompt_tokens + 8 - 2
    _, tokens, _ = engine.generate(request)

    # Replay the engine's own cached forward path and compare every step's logits (argmax alone
    # is too coarse on a random model) with a full forward over the whole sequence.
    sequence = prepared.inputs["input_ids"]
    cache = DynamicCache(config=engine.model.config)
    for expected in tokens:
        with engine.runner.turn(["base"]):
            cached_logits, cache = engine.runner.forward(prepared, sequence, cache)
            # the whole sequence through every layer; logits for the last position alone (all 4,000
            # positions' logits are 3 GB at the 200k vocabulary)
            full_logits = engine.model(input_ids=sequence, use_cache=False, logits_to_keep=1).logits[:, -1]
            torch.testing.assert_close(cached_logits, full_logits, rtol=1e-4, atol=1e-4)
            sequence = torch.cat([sequence, torch.tensor([[expected]])], dim=1)
    assert len(tokens) == 8 and sequence.shape[1] > switch + 2
