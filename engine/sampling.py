"""Choosing the next token for many rows at once: each request's settings (temperature, top-k,
top-p, repetition / presence / frequency penalties) as per-row tensors over one (rows, vocab)
block of logits, the same steps in the same order as transformers' logits processors
(RepetitionPenalty, our OccurrencePenalty, the grammar mask, SuppressTokens, Temperature, TopK,
TopP), so a row gets what it would get alone. A lone request is a batch of one: there is one
way to choose a token.

Host work per step does not grow with the rows: greedy rows take one argmax, sampled rows one
multinomial (a row with its own seed draws from its own generator), and the caller reads every
row's token back in one transfer. Only what is per row by nature runs per row: a grammar's
matcher, and the log-probabilities a request asked for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from engine.grammar import GrammarConstraint, GrammarTokenizer
from engine.request import SamplingParams


@dataclass
class Sampler:
    """How one request picks each next token: its settings, as plain values."""

    params: SamplingParams
    suppressed: torch.Tensor  # token ids never to emit (the media placeholders), on the device
    prompt_tokens: int  # presence and frequency penalties count the answer's tokens only
    grammar: GrammarConstraint | None = None
    generator: torch.Generator | None = None  # seeded per request when the request names a seed
    # (token id, log-probability, [(id, log-probability)] of the likeliest) per chosen token, in
    # order, for the consumer to take (Engine._chunks): the producer may be another thread
    chosen: deque = field(default_factory=deque)

    @classmethod
    def for_params(
        cls,
        params: SamplingParams,
        device: torch.device,
        suppressed: list[int],
        prompt_tokens: int,
        grammar_tokenizer: GrammarTokenizer | None = None,
    ) -> "Sampler":
        """`suppressed`: token ids never to emit (the media placeholders the next step would try
        to fill). The grammar mask comes before the warpers: top-k or top-p must choose among
        tokens the grammar allows, never be left with none."""
        grammar = GrammarConstraint(grammar_tokenizer, params.grammar, prompt_tokens) if params.grammar else None
        generator = None
        if not params.greedy and params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
        ids = torch.tensor(suppressed, dtype=torch.long, device=device)
        return cls(params, ids, prompt_tokens, grammar, generator)

    @property
    def greedy(self) -> bool:
        return self.params.greedy

    @property
    def logprobs(self) -> int | None:
        return self.params.logprobs

    @property
    def reads_history(self) -> bool:
        """Whether choosing a token reads the ids so far (penalties, a grammar); others never do."""
        return self.grammar is not None or self.params.repetition_penalty != 1.0 or _occurrence(self)

    def choose(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The next token id, shape (1,), from one row's last-position logits (1, vocab)."""
        return choose_rows([self], [ids], logits)


@torch.inference_mode()  # the logits are the forward pass's inference tensors; edited in place here
def choose_rows(samplers: list[Sampler], ids: list[torch.Tensor | None], logits: torch.Tensor) -> torch.Tensor:
    """Row i's next token under samplers[i], from logits (rows, vocab) and its ids so far (1, n_i;
    None will do where the sampler `reads_history` not) -> (rows,) on the logits' device. The
    caller reads them back with one `.tolist()`."""
    scores = logits.float()
    rows = range(len(samplers))
    _repetition_penalty(scores, [i for i in rows if samplers[i].params.repetition_penalty != 1.0], samplers, ids)
    _occurrence_penalty(scores, [i for i in rows if _occurrence(samplers[i])], samplers, ids)
    for i in rows:
        if samplers[i].grammar is not None:  # its own matcher, by nature one row at a time
            samplers[i].grammar(ids[i], scores[i : i + 1])
    suppressed = samplers[0].suppressed
    if all(s.suppressed is suppressed for s in samplers):  # one engine, one list: one index_fill
        scores.index_fill_(1, suppressed, float("-inf"))
    else:
        for i in rows:
            scores[i].index_fill_(0, samplers[i].suppressed, float("-inf"))
    sampled = [i for i in rows if not samplers[i].greedy]
    if not sampled:  # the common case: every row greedy
        tokens = _argmax(scores)
    else:
        tokens = torch.empty(len(samplers), dtype=torch.long, device=scores.device)
        greedy = [i for i in rows if samplers[i].greedy]
        if greedy:
            tokens[greedy] = _argmax(scores[greedy])
        warped = _warp(scores[sampled], [samplers[i].params for i in sampled])
        tokens[sampled] = _draw(warped, [samplers[i].generator for i in sampled])
        scores[sampled] = warped  # the log-probabilities below are of what was drawn from
    for i in rows:
        if samplers[i].logprobs is not None:  # a read-back per step: only when asked for
            _record_logprobs(samplers[i], scores[i], tokens[i])
    return tokens


def _argmax(scores: torch.Tensor) -> torch.Tensor:
    """Each row's first highest score's index, as `argmax` gives it. `max` takes a faster kernel on
    a CPU: 16 rows of 200,064 logits 1.36 ms against 1.85, one row 0.12 against 0.17 (this 2-core
    CPU, fp32); a tie goes to the first index either way."""
    return scores.max(dim=-1).indices


def _occurrence(sampler: Sampler) -> bool:
    return bool(sampler.params.presence_penalty or sampler.params.frequency_penalty)


def _padded(pieces: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids of unequal lengths -> (rows, longest) padded with each row's first id, and a mask of
    the real ones. A repeated id is harmless where a value is gathered and written back."""
    width = max(len(piece) for piece in pieces)
    out = torch.stack([torch.cat([piece, piece[:1].expand(width - len(piece))]) for piece in pieces])
    lengths = torch.tensor([len(piece) for piece in pieces], device=out.device)
    return out, torch.arange(width, device=out.device)[None, :] < lengths[:, None]


def _repetition_penalty(scores: torch.Tensor, which: list[int], samplers: list[Sampler], ids: list[torch.Tensor]):
    """transformers' RepetitionPenaltyLogitsProcessor, each row its own penalty, over prompt and answer."""
    if not which:
        return
    seen, _ = _padded([ids[i][0] for i in which])
    penalty = scores.new_tensor([samplers[i].params.repetition_penalty for i in which])[:, None]
    block = scores[which]
    picked = block.gather(1, seen)
    block.scatter_(1, seen, torch.where(picked < 0, picked * penalty, picked / penalty))
    scores[which] = block


def _occurrence_penalty(scores: torch.Tensor, which: list[int], samplers: list[Sampler], ids: list[torch.Tensor]):
    """OpenAI's presence and frequency penalties, over the answer's own tokens (not the prompt's):
    a token's logit drops by `presence` once it has appeared and by `frequency` per appearance."""
    answers = [ids[i][0, samplers[i].prompt_tokens :] for i in which]
    which = [i for i, answer in zip(which, answers) if len(answer)]
    if not which:
        return
    tokens, real = _padded([answer for answer in answers if len(answer)])
    counts = torch.zeros(len(which), scores.shape[1], dtype=scores.dtype, device=scores.device)
    counts.scatter_add_(1, tokens, real.to(scores.dtype))
    presence = scores.new_tensor([samplers[i].params.presence_penalty for i in which])[:, None]
    frequency = scores.new_tensor([samplers[i].params.frequency_penalty for i in which])[:, None]
    scores[which] = scores[which] - frequency * counts - presence * (counts > 0).to(scores.dtype)


def _warp(scores: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    """Temperature, then top-k, then top-p, then min-p, each row with its own values (transformers' warpers)."""
    scores = scores / scores.new_tensor([p.temperature for p in params])[:, None]
    ks = [min(p.top_k, scores.shape[1]) for p in params]
    if any(ks):
        kth = scores.topk(max(ks), dim=-1).values  # (rows, largest k), descending
        floor = kth.gather(1, torch.tensor([max(k - 1, 0) for k in ks], device=scores.device)[:, None])
        floor = torch.where(torch.tensor(ks, device=scores.device)[:, None] > 0, floor, float("-inf"))
        scores = scores.masked_fill(scores < floor, float("-inf"))
    cut = [i for i, p in enumerate(params) if p.top_p < 1.0]
    if cut:
        block = scores[cut]
        ascending, order = block.sort(dim=-1)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative <= (1 - block.new_tensor([params[i].top_p for i in cut]))[:, None]
        drop[:, -1] = False  # the likeliest token always stays
        scores[cut] = block.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    floors = [i for i, p in enumerate(params) if p.min_p > 0.0]
    if floors:  # min_p x the likeliest probability, as log-probabilities: the likeliest always stays
        block = scores[floors].log_softmax(dim=-1)
        floor = (
            block.max(dim=-1, keepdim=True).values + block.new_tensor([params[i].min_p for i in floors])[:, None].log()
        )
        scores[floors] = scores[floors].masked_fill(block < floor, float("-inf"))
    return scores


def _draw(scores: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
    """One multinomial draw per row: rows without a seed together, a seeded row from its generator."""
    probs = scores.softmax(dim=-1)
    tokens = torch.empty(len(generators), dtype=torch.long, device=scores.device)
    shared = [i for i, g in enumerate(generators) if g is None]
    if shared:
        tokens[shared] = torch.multinomial(probs[shared], 1)[:, 0]
    for i, generator in enumerate(generators):
        if generator is not None:
            tokens[i] = torch.multinomial(probs[i : i + 1], 1, generator=generator)[0, 0]
    return tokens


def _record_logprobs(sampler: Sampler, scores: torch.Tensor, token: torch.Tensor) -> None:
    logprobs = scores.log_softmax(dim=-1)
    top = logprobs.topk(sampler.logprobs) if sampler.logprobs else None
    chosen = int(token)
    sampler.chosen.append(
        (chosen, float(logprobs[chosen]), list(zip(top.indices.tolist(), top.values.tolist())) if top else [])
    )
