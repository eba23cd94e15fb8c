"""A decode batch's logits are written into memory kept from step to step (engine/output_head.py
`LogitsBlock`), with the values a new tensor would hold (tests/engine/test_batching.py: a padded
batch decoding on it gives each row its tokens alone)."""

from __future__ import annotations

import torch

from engine.output_head import LogitsBlock, writing_into


def test_batches_share_the_block_and_get_the_heads_own_values(engine):
    head = engine.model.lm_head
    block = LogitsBlock()
    four, two = torch.randn(4, 1, head.in_features), torch.randn(2, 1, head.in_features)
    with torch.no_grad():
        alone = head(four)
        with writing_into(block):
            first = head(four)
            torch.testing.assert_close(first, alone)
            base = first.data_ptr()
            second = head(two)
            assert second.data_ptr() == base  # the smaller batch on the same memory
            torch.testing.assert_close(second, torch.nn.functional.linear(two, head.weight))
        assert head(four).data_ptr() != base  # outside: a tensor of its own again
