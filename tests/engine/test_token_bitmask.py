"""The grammar's token mask applied eagerly (engine/grammar.py `apply_bitmask`): the same rule as
llguidance's compiled kernel (bit i of word w allows token 32 w + i; tokens past the mask are
refused), checked against that rule bit by bit, without the kernel's ~10 s first-call compile."""

from __future__ import annotations

import pytest
import torch

from engine.grammar import apply_bitmask


@pytest.mark.parametrize("vocab", [200_064, 100, 64, 33])
def test_a_token_is_allowed_exactly_where_its_bit_is_set(vocab):
    generator = torch.Generator().manual_seed(vocab)
    words = (vocab + 31) // 32
    mask = torch.randint(-(2**31), 2**31 - 1, (1, words), dtype=torch.int32, generator=generator)
    scores = torch.randn(1, vocab, generator=generator)
    expected = scores.clone()
    for token in range(vocab):
        if not (int(mask[0, token // 32]) >> (token % 32)) & 1:
            expected[0, token] = float("-inf")
    apply_bitmask(scores, mask)
    assert torch.equal(scores, expected)


def test_tokens_past_the_mask_are_refused():
    scores = torch.zeros(1, 100)
    apply_bitmask(scores, torch.full((1, 2), -1, dtype=torch.int32))  # 64 tokens, all allowed
    assert torch.isfinite(scores[0, :64]).all() and torch.isinf(scores[0, 64:]).all()


def test_applying_a_mask_compiles_nothing():
    from torch._dynamo.utils import counters

    frames = counters["frames"]["total"]
    apply_bitmask(torch.randn(1, 200_064), torch.full((1, 6252), 5, dtype=torch.int32))
    assert counters["frames"]["total"] == frames  # llguidance's kernel: a compile, ~10 s on a CPU
