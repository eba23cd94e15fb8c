"""The vectorised sampler against transformers' own logits processors, row by row: the same
tokens for greedy and seeded rows under every setting (temperature, top-k, top-p, min-p, repetition,
presence and frequency penalties), whatever else shares the batch."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.request import SamplingParams
from engine.sampling import Sampler, choose_rows

VOCAB, PROMPT, SUPPRESSED = 1000, 12, [7, 8]
SETTINGS = [
    SamplingParams(),  # greedy
    SamplingParams(temperature=0.7, seed=1),
    SamplingParams(temperature=1.3, top_k=5, seed=2),
    SamplingParams(temperature=1.0, top_p=0.8, seed=3),
    SamplingParams(temperature=0.9, top_k=50, top_p=0.5, repetition_penalty=1.3, seed=4),
    SamplingParams(repetition_penalty=0.8),  # greedy with a penalty
    SamplingParams(temperature=1.1, presence_penalty=1.5, frequency_penalty=0.5, seed=5),
    SamplingParams(top_k=1, temperature=2.0, seed=6),
    SamplingParams(temperature=1.5, top_p=0.9, min_p=0.1, seed=7),
]


def reference(params: SamplingParams, ids: torch.Tensor, logits: torch.Tensor, generator) -> int:
    """transformers' processors in the order our Sampler documents, then argmax or one draw."""
    processors = LogitsProcessorList()
    if params.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    scores = processors(ids, logits.clone())
    answer = ids[:, PROMPT:]
    if answer.shape[1] and (params.presence_penalty or params.frequency_penalty):  # OpenAI's definition
        counts = torch.zeros_like(scores).scatter_add_(1, answer, torch.ones_like(answer, dtype=scores.dtype))
        scores = scores - params.frequency_penalty * counts - params.presence_penalty * (counts > 0).float()
    scores = SuppressTokensLogitsProcessor(SUPPRESSED)(ids, scores)
    if params.greedy:
        return int(scores.argmax())
    warpers = [TemperatureLogitsWarper(params.temperature)]
    warpers += [TopKLogitsWarper(params.top_k)] if params.top_k else []
    warpers += [TopPLogitsWarper(params.top_p)] if params.top_p < 1 else []
    warpers += [MinPLogitsWarper(params.min_p)] if params.min_p else []
    scores = LogitsProcessorList(warpers)(ids, scores)
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator)[0, 0])


@pytest.mark.parametrize("order", [list(range(len(SETTINGS))), list(reversed(range(len(SETTINGS))))])
def test_every_row_draws_what_transformers_would_draw_alone(order):
    torch.manual_seed(0)
    settings = [SETTINGS[i] for i in order]
    samplers = [Sampler.for_params(p, torch.device("cpu"), SUPPRESSED, PROMPT) for p in settings]
    generators = [torch.Generator().manual_seed(p.seed) if p.seed is not None else None for p in settings]
    ids = [torch.randint(0, VOCAB, (1, PROMPT)) for _ in settings]
    for _ in range(12):  # several steps: the penalties see the answers grow
        logits = torch.randn(len(settings), VOCAB) * 3
        want = [reference(p, i, logits[r : r + 1], g) for r, (p, i, g) in enumerate(zip(settings, ids, generators))]
        got = choose_rows(samplers, ids, logits.clone()).tolist()
        assert got == want
        assert not set(got) & set(SUPPRESSED)
        ids = [torch.cat([i, torch.tensor([[t]])], dim=1) for i, t in zip(ids, got)]


def test_a_lone_row_is_a_batch_of_one():
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=11)
    lone = Sampler.for_params(params, torch.device("cpu"), SUPPRESSED, PROMPT)
    batched = Sampler.for_params(params, torch.device("cpu"), SUPPRESSED, PROMPT)
    other = Sampler.for_params(SamplingParams(temperature=1.5, seed=3), torch.device("cpu"), SUPPRESSED, PROMPT)
    ids = torch.randint(0, VOCAB, (1, PROMPT))
    for _ in range(8):
        logits = torch.randn(2, VOCAB)
        alone = int(lone.choose(ids, logits[:1].clone())[0])
        together = choose_rows([batched, other], [None, None], logits.clone()).tolist()[0]
        assert alone == together


def test_rows_that_read_no_history_are_not_handed_any():
    plain = Sampler.for_params(SamplingParams(temperature=0.5), torch.device("cpu"), SUPPRESSED, PROMPT)
    penalised = Sampler.for_params(SamplingParams(repetition_penalty=1.2), torch.device("cpu"), SUPPRESSED, PROMPT)
    assert not plain.reads_history and penalised.reads_history
    tokens = choose_rows([plain, penalised], [None, torch.randint(0, VOCAB, (1, PROMPT))], torch.randn(2, VOCAB))
    assert tokens.shape == (2,)
