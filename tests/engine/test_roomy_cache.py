"""The padded rows' cache keeps room to grow (engine/roomy_cache.py): a decode step writes its
token in place instead of copying the whole cache, and holds what transformers' DynamicCache holds."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from engine.request import GenerationRequest, SamplingParams
from engine.roomy_cache import roomy_cache, stacked_cache
from media.parts import Message, TextPart
from tests.engine.conftest import reference_tokens


def _layers(config, batch: int, length: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    heads, size = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
    shape = (batch, heads, length, size)
    return [
        (torch.randn(shape, generator=generator), torch.randn(shape, generator=generator))
        for _ in range(config.num_hidden_layers)
    ]


def test_it_holds_what_a_dynamic_cache_holds_across_its_regrowth(engine):
    config = engine.model.config
    roomy = roomy_cache(config, _layers(config, 3, 40, seed=0))
    plain = DynamicCache(ddp_cache_data=_layers(config, 3, 40, seed=0), config=config)
    moves = 0  # steps after which the keys lie somewhere else (a copy of the whole cache)
    for step, new in enumerate([1] * 50 + [7] + [1] * 30):  # single tokens and a chunk, past the room twice
        before = roomy.layers[0].keys.data_ptr()
        for index, (keys, values) in enumerate(_layers(config, 3, new, seed=step + 1)):
            got, want = roomy.update(keys, values, index), plain.update(keys, values, index)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        moves += roomy.layers[0].keys.data_ptr() != before
    assert roomy.get_seq_length() == plain.get_seq_length() == 40 + 50 + 7 + 30
    assert roomy.get_mask_sizes(torch.tensor([0]), 0) == plain.get_mask_sizes(torch.tensor([0]), 0)
    assert 2 <= moves <= 4  # it grew a few times, not at every step


def test_a_config_whose_window_could_slide_keeps_the_plain_cache(engine):
    config = type(engine.model.config).from_dict(engine.model.config.to_dict())
    config.sliding_window = 1024  # within the model's positions: transformers' layers would slide
    cache = roomy_cache(config, _layers(config, 1, 8, seed=0))
    assert not hasattr(cache.layers[0], "_key_room")
    assert cache.get_seq_length() == 8
    short, long = _layers(config, 1, 5, seed=1), _layers(config, 1, 8, seed=2)
    stacked = stacked_cache(config, [short, long])
    assert not hasattr(stacked.layers[0], "_key_room") and stacked.get_seq_length() == 8
    assert torch.equal(stacked.layers[0].keys[0, :, :3], torch.zeros_like(short[0][0][0, :, :3]))
    assert torch.equal(stacked.layers[0].keys[1], long[0][0][0])


def test_a_long_answer_across_the_regrowth_still_equals_generate(engine, reference_model):
    """A short prompt's room is 32 tokens: an 80-token answer grows the cache twice mid-answer."""
    request = GenerationRequest(
        [Message("user", [TextPart("Count slowly from one to one hundred, in words.")])],
        SamplingParams(max_new_tokens=80),
    )
    _, tokens, final = engine.generate(request)
    assert final.metrics.completion_tokens == 80 or tokens[-1] in engine.runner.end_ids
    assert tokens == reference_tokens(reference_model, engine, request, "base")


def test_stacked_rows_are_left_padded_with_zeros_and_keep_room_to_grow(engine):
    """A row joining a padded batch (engine/row_caches.py): the rows one after the other, each
    padded on the left to the longest, written once into a cache that still grows in place."""
    config = engine.model.config
    batch, joining = _layers(config, 2, 30, seed=1), _layers(config, 1, 45, seed=2)
    stacked = stacked_cache(config, [batch, joining])
    for layer, (old, new) in zip(stacked.layers, zip(batch, joining)):
        for got, before, added in zip((layer.keys, layer.values), old, new):
            padded = torch.cat([torch.zeros(2, *before.shape[1:-2], 15, before.shape[-1]), before], dim=-2)
            assert torch.equal(got, torch.cat([padded, added]))
    before = stacked.layers[0].keys.data_ptr()
    for index, (keys, values) in enumerate(_layers(config, 3, 1, seed=3)):
        stacked.update(keys, values, index)
    assert stacked.get_seq_length() == 46 and stacked.layers[0].keys.data_ptr() == before
