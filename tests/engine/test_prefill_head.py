"""A prefill runs the output head as one matrix product: transformers slices the prompt's last
position as a view with the prompt's strides, PyTorch's matmul then ran a batched product over the
whole transposed head (200,064 rows), which in bf16 first copies it: 3.2 s of every prefill at full
size on a CPU."""

from __future__ import annotations

import uuid

from torch.profiler import ProfilerActivity, profile

from engine.output_head import hold_standard_strides
from engine.request import GenerationRequest, SamplingParams
from media.parts import Message, TextPart


def batched_head_products(engine, prompt: str) -> list:
    vocab, hidden = engine.model.lm_head.weight.shape
    # a prompt never asked before: a kept one (engine/prefix_cache.py) would prefill one token alone
    prompt += uuid.uuid4().hex
    request = GenerationRequest([Message("user", [TextPart(prompt)])], SamplingParams(max_new_tokens=2))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        list(engine.stream(request))
    return [
        e
        for e in prof.events()
        if e.name in ("aten::bmm", "aten::copy_")
        and len(e.input_shapes) > 1
        and [hidden, vocab] in [shape[-2:] for shape in e.input_shapes]
    ]


def test_prefill_runs_the_head_as_one_matrix_product(engine):
    engine.set_decode("dynamic")
    assert batched_head_products(engine, "A prompt of a few words, long enough to slice. " * 8) == []


def test_the_hook_is_what_prevents_the_copy(engine):
    """Without it the batched product is back: the test above can fail."""
    engine.strides_hook.remove()
    del engine.model.lm_head.phi4mm_strides_hook
    try:
        assert batched_head_products(engine, "A prompt of a few words, long enough to slice. " * 8)
    finally:
        engine.strides_hook = hold_standard_strides(engine.model.lm_head)
