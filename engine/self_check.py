"""The fast path proves itself before it serves. After the static or compiled path is chosen, a
short canary runs under every adapter on it and on the dynamic path (transformers' own cache, the
reference), teacher-forced with the dynamic path's greedy tokens so that one near-tie cannot make
the two drift apart. Every step's logits must agree within what the dtype's rounding explains.

Why these numbers (measured on the tiny checkpoint, CPU): the error is the largest logit
difference relative to the largest logit. A sound static path is 1.2e-6 off in fp32 and 6.8e-3 in
bf16 (rounding between two kernels); a cache one position off is 0.42 off in both. The
tolerances, 1e-3 and 5e-2, sit between; on a GPU, bf16 kernels round differently, and 5e-2 leaves
them 7x the headroom measured here (not yet measured on a GPU).
"""

from __future__ import annotations

import torch

from engine.router import BASE

CANARY = "The quick brown fox jumps over the lazy dog. Then it ran home and"
CANARY_STEPS = 4  # decode steps after the prefill: positions, cache appends and the step graph
TOLERANCE = {torch.float32: 1e-3}  # relative to the largest logit; other dtypes: HALF_TOLERANCE
HALF_TOLERANCE = 5e-2


def check_fast_path(engine) -> str | None:
    """None when the static path matches the dynamic one under every adapter; else the reason."""
    tolerance = TOLERANCE.get(engine.dtype, HALF_TOLERANCE)
    for adapter in [BASE, *engine.adapters]:
        prepared = engine.canary_prompt(CANARY, adapter)
        reference, tokens = _dynamic_logits(engine, prepared)
        fast = _static_logits(engine, prepared, tokens)
        for step, (want, got) in enumerate(zip(reference, fast)):
            error = float((want - got).abs().max() / want.abs().max().clamp_min(1e-6))
            if not error <= tolerance:  # also catches NaN
                return (
                    f"{adapter} adapter: step {step} logits differ from the dynamic path by {error:.3g} "
                    f"of the largest logit (tolerance {tolerance:g})"
                )
    return None


def _dynamic_logits(engine, prepared) -> tuple[list[torch.Tensor], list[int]]:
    runner = engine.runner
    ids, cache, logits = prepared.input_ids, runner.new_cache(), []
    for _ in range(CANARY_STEPS + 1):
        with runner.turn([prepared.adapter]):
            step, cache = runner.forward(prepared, ids, cache)
        logits.append(step.float()[0])
        ids = torch.cat([ids, step.argmax(dim=-1, keepdim=True)], dim=1)
    return logits, ids[0, prepared.prompt_tokens :].tolist()


def _static_logits(engine, prepared, tokens: list[int]) -> list[torch.Tensor]:
    decoder = engine.static
    with engine.runner.turn([prepared.adapter]):
        logits = [decoder.prefill(prepared)[0].float().clone()]
        for token in tokens[:-1]:
            step = decoder.step(torch.tensor([[token]], device=engine.device))
            logits.append(step[0].float().clone())
    return logits
