"""The decode contract: what the engine (engine/engine.py), the static/compiled runner
(engine/static_decode.py) and the batcher (engine/batching.py) share, and nothing else of each
other's. One token, on one screen:

    with runner.turn([prepared.adapter]):                      # the model is ours for one pass
        logits, cache = runner.forward(prepared, ids, cache)   # prompt (with media) or one token
        token = sampler.choose(ids, logits)                    # penalties, warpers, argmax or draw
    ids = torch.cat([ids, token[:, None]], dim=1)              # outside the turn: others step now

`Engine.decode_alone` is that loop; the batcher runs the same pass for many rows at once
(`runner.turn(adapters)` with one adapter per row), and the static path swaps `runner.forward`
for a step on its preallocated cache.
"""

from __future__ import annotations

import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import (
    DynamicCache,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.grammar import GrammarConstraint, GrammarTokenizer
from engine.request import SamplingParams
from engine.router import LoraRouter


@dataclass
class PreparedPrompt:
    """Model inputs for one request, built outside the generation slot."""

    inputs: dict  # processor output on the model's device: input_ids, pixel values, audio features …
    adapter: str  # the LoRA adapter the request runs under ("base": none)
    prompt_tokens: int
    max_new_tokens: int  # the request's, clipped to what the context window leaves

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def media(self) -> dict:
        """The inputs the prompt's first forward pass needs besides its token ids."""
        return {k: v for k, v in self.inputs.items() if k not in ("input_ids", "attention_mask")}


@dataclass
class Sampler:
    """How one request picks each next token."""

    processors: LogitsProcessorList  # repetition penalty, suppressed tokens, temperature, top-k, top-p
    generator: torch.Generator | None  # seeded per request when the request names a seed
    greedy: bool
    logprobs: int | None = None  # SamplingParams.logprobs
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
        processors = LogitsProcessorList()
        if params.repetition_penalty != 1.0:
            processors.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        if params.presence_penalty or params.frequency_penalty:
            processors.append(OccurrencePenalty(params.presence_penalty, params.frequency_penalty, prompt_tokens))
        if params.grammar is not None:
            processors.append(GrammarConstraint(grammar_tokenizer, params.grammar, prompt_tokens))
        processors.append(SuppressTokensLogitsProcessor(suppressed, device=device))
        if not params.greedy:
            processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k > 0:
                processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(params.top_p))
        generator = None
        if not params.greedy and params.seed is not None:
            generator = torch.Generator(device=device).manual_seed(params.seed)
        return cls(processors, generator, params.greedy, params.logprobs)

    def choose(self, ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The next token id(s), shape (rows,), from the last position's logits (rows, vocab)."""
        scores = self.processors(ids, logits.float())
        if self.greedy:
            token = scores.argmax(dim=-1)
        else:
            token = torch.multinomial(scores.softmax(dim=-1), 1, generator=self.generator)[:, 0]
        if self.logprobs is not None:  # costs a read-back per step: only when asked for
            logprobs = scores[0].log_softmax(dim=-1)
            top = logprobs.topk(self.logprobs) if self.logprobs else None
            self.chosen.append(
                (
                    int(token[0]),
                    float(logprobs[token[0]]),
                    list(zip(top.indices.tolist(), top.values.tolist())) if top else [],
                )
            )
        return token


class OccurrencePenalty:
    """OpenAI's presence and frequency penalties, over the answer's own tokens (not the prompt's):
    a token's logit drops by `presence` once it has appeared and by `frequency` per appearance."""

    def __init__(self, presence: float, frequency: float, prompt_tokens: int):
        self.presence, self.frequency, self.prompt_tokens = presence, frequency, prompt_tokens

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        answer = ids[:, self.prompt_tokens :]
        if answer.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, answer, torch.ones_like(answer, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class ModelRunner:
    """The model as the decode paths use it: one forward pass at a time, under the adapters asked for."""

    def __init__(self, model, router: LoraRouter, end_ids: set[int], longrope_switch_at: int | None):
        self.model = model
        self.router = router
        self.end_ids = end_ids  # a token that ends an answer
        self.longrope_switch_at = longrope_switch_at  # where long-RoPE's factors take over, if it has them
        # One forward pass at a time, never held across a yield: a slow reader must not hold up
        # anyone else's tokens.
        self.slot = threading.Lock()

    @contextmanager
    def turn(self, adapters: list[str]):
        """The one way into a forward pass: the slot, row i under adapters[i] (one adapter for
        all rows is the ordinary path), and inference mode for the pass alone, never across a
        yield, so grad mode is the caller's own again between tokens."""
        with self.slot, self.router.mixed(adapters), torch.inference_mode():
            yield

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    def forward(
        self, prepared: PreparedPrompt, ids: torch.Tensor, cache: DynamicCache
    ) -> tuple[torch.Tensor, DynamicCache]:
        """Logits for the next token, (1, vocab). The first call (and a long-RoPE switch) runs the
        whole prompt with its media; later calls feed the tokens the cache lacks. Call in a turn."""
        cached = cache.get_seq_length()
        switch = self.longrope_switch_at
        # Crossing the original context length changes every rotary frequency to the long factors:
        # recompute the whole sequence once, as transformers' Phi-4 code intends (its 5.23
        # `generate` drops the cache but then feeds only the newest token).
        if cached and switch and cached <= switch < ids.shape[1]:
            cache, cached = self.new_cache(), 0
        if cached == 0:
            out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **prepared.media)
        else:
            out = self.model(input_ids=ids[:, cached:], past_key_values=cache, use_cache=True)
        return out.logits[:, -1, :], cache

    def finished(self, prepared: PreparedPrompt, ids: torch.Tensor, token: int) -> bool:
        """Whether `token`, just appended to `ids`, ends the answer (an end token or the length cap)."""
        return token in self.end_ids or ids.shape[1] - prepared.prompt_tokens >= prepared.max_new_tokens
