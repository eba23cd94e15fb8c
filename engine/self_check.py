"""The fast path proves itself before it serves. After the static or compiled path is chosen, a
short canary runs under every adapter, at every batch-size bucket (a mix of adapters in each), on
it and on the dynamic path (transformers' own cache, the reference), teacher-forced with the
dynamic path's greedy tokens so that one near-tie cannot make the two drift apart. Every step's
logits must agree within what the dtype's rounding explains.

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
    """None when the slot decoder matches the dynamic path at every bucket, row i of a bucket
    under the i-th adapter in turn (base, vision, speech, base, ...), so every bucket also runs a
    mix; else the reason."""
    tolerance = TOLERANCE.get(engine.dtype, HALF_TOLERANCE)
    adapters = [BASE, *engine.adapters]
    prepared = {adapter: engine.canary_prompt(CANARY, adapter) for adapter in adapters}
    reference = {adapter: _dynamic_logits(engine, prepared[adapter]) for adapter in adapters}
    for bucket in engine.static.buckets:
        rows = [adapters[i % len(adapters)] for i in range(bucket)]
        fast = _slot_logits(engine, [prepared[a] for a in rows], [reference[a][1] for a in rows])
        for row, adapter in enumerate(rows):
            for step, (want, got) in enumerate(zip(reference[adapter][0], fast[row])):
                error = float((want - got).abs().max() / want.abs().max().clamp_min(1e-6))
                if not error <= tolerance:  # also catches NaN
                    return (
                        f"batch {bucket}, {adapter} adapter: step {step} logits differ from the dynamic path by "
                        f"{error:.3g} of the largest logit (tolerance {tolerance:g})"
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


def _slot_logits(engine, prepared: list, tokens: list[list[int]]) -> list[list[torch.Tensor]]:
    """Each row's logits on the slot decoder, all rows admitted and then stepped together."""
    decoder, slots = engine.static, [("self-check", i) for i in range(len(prepared))]
    with engine.runner.turn(None):
        try:
            logits = [[decoder.admit(slot, p)[0].clone()] for slot, p in zip(slots, prepared)]
            for step in range(CANARY_STEPS):
                fed = torch.tensor([row[step] for row in tokens], device=engine.device)
                for row, out in zip(logits, decoder.step(fed, slots)):
                    row.append(out.clone())
        finally:
            for slot in slots:
                decoder.release(slot)
    return logits
