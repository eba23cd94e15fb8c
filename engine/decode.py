"""The decode contract: what the scheduler (engine/scheduler.py), its row caches
(engine/row_caches.py), the slot decoder (engine/slot_decoder.py) and the start-up self-check
share, and nothing else of each other's. One token, on one screen:

    with runner.turn([prepared.adapter]):                      # the model is ours for one pass
        logits, cache = runner.forward(prepared, ids, cache)   # prompt (with media) or one token
        token = sampler.choose(ids, logits)                    # penalties, warpers, argmax or draw
    ids = torch.cat([ids, token[:, None]], dim=1)              # outside the turn: others step now

The scheduler runs that pass for many rows at once (`runner.turn(adapters)` with one adapter per
row, `engine.sampling.choose_rows` for their tokens) and feeds a prompt by chunks
(`runner.prefill`); the slot decoder swaps `runner.forward` for a step on its preallocated cache.
The Sampler (engine/sampling.py) is part of this contract.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from engine.roomy_cache import roomy_cache
from engine.router import LoraRouter


@dataclass
class PreparedPrompt:
    """Model inputs for one request, built outside the generation slot."""

    inputs: dict  # processor output on the model's device: input_ids, pixel values, audio features …
    adapter: str  # the LoRA adapter the request runs under ("base": none)
    prompt_tokens: int
    max_new_tokens: int  # the request's, clipped to what the context window leaves
    media_end: int = 0  # one past the last media placeholder (0: none): the first prefill chunk's least end
    shared_prefix: int = 0  # leading tokens other prompts may share (the system turn; engine/prefix_cache.py)
    media_key: str = ""  # a digest of its images and audio ("" if none; engine/prefix_cache.py)
    cached_tokens: int = 0  # set at its first prefill: leading tokens whose KV came from the prefix cache

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]

    @property
    def media(self) -> dict:
        """The inputs the prompt's first forward pass needs besides its token ids."""
        return {k: v for k, v in self.inputs.items() if k not in ("input_ids", "attention_mask")}


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
    def turn(self, adapters: list[str] | None):
        """The one way into a forward pass: the slot, row i under adapters[i] (one adapter for
        all rows is the ordinary path), and inference mode for the pass alone, never across a
        yield, so grad mode is the caller's own again between tokens. None: the slot decoder
        (engine/slot_decoder.py) gives each row its adapter itself, and PEFT's state is left alone."""
        with self.slot, self.router.mixed(adapters) if adapters else nullcontext(), torch.inference_mode():
            yield

    def new_cache(self) -> DynamicCache:
        """An empty cache whose layers grow in place (engine/roomy_cache.py)."""
        return roomy_cache(self.model.config)

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

    def prefill(self, prepared: PreparedPrompt, cache: DynamicCache, end: int) -> torch.Tensor | None:
        """Feeds the prompt's tokens from what `cache` holds (nothing, or a cached shared prefix) up
        to `end` (its media with the first chunk fed, which must hold every media placeholder) ->
        the next token's logits once the whole prompt is in, else None. Call in a turn."""
        start = cache.get_seq_length()
        # the chunk that holds the media placeholders: the first, or the first after a cached prefix
        media = prepared.media if start == 0 or start < prepared.media_end else {}
        ids = prepared.input_ids[:, start:end]
        out = self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **media)
        return out.logits[:, -1, :] if end >= prepared.prompt_tokens else None

    def finished(self, prepared: PreparedPrompt, answer_tokens: int, token: int) -> bool:
        """Whether `token`, the answer's `answer_tokens`-th, ends it (an end token or the length cap)."""
        return token in self.end_ids or answer_tokens >= prepared.max_new_tokens
