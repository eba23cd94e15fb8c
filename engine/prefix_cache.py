"""Prompt beginnings that many requests share, kept as keys and values so that a new request's
prefill starts after them. The beginning kept is the system turn (PreparedPrompt.shared_prefix):
the service's safety prompt opens every conversation, 128 of a short question's 137 tokens and
a tenth of a photo's. On a GPU that is a few milliseconds of prefill; on a CPU at full size, a
few seconds before the first token (bench/prefix_cache.py measures it).

An entry is keyed by its exact token ids and the adapter the request runs under (a LoRA changes
every layer's keys and values). A prompt that reaches the long-RoPE switch neither uses nor
gives one: its rotary frequencies, the prefix's included, depend on its length. The entries hold
at most `tokens` tokens in all (memory: at the released shapes in bf16, 128 KiB a token), the
oldest-used dropped first; each is a copy, and each use copies it again, so no request's cache
shares memory with another's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from transformers import DynamicCache

from engine.decode import ModelRunner, PreparedPrompt


class PrefixCache:
    def __init__(self, runner: ModelRunner, tokens: int):
        self.runner = runner
        self.tokens = tokens  # the most tokens kept, all entries together (0: none kept)
        self._kept: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._held = 0  # tokens kept now

    def start(self, prepared: PreparedPrompt) -> DynamicCache:
        """A cache for the prompt's prefill: its shared beginning when one is kept (counted in
        `prepared.cached_tokens`), else empty."""
        layers = self._kept.get(key) if (key := self._key(prepared)) else None
        if layers is None:
            return self.runner.new_cache()
        self._kept.move_to_end(key)
        prepared.cached_tokens = prepared.shared_prefix
        copies = [(keys.clone(), values.clone()) for keys, values in layers]
        return DynamicCache(ddp_cache_data=copies, config=self.runner.model.config)

    def keep(self, prepared: PreparedPrompt, cache: DynamicCache) -> None:
        """After a prefill chunk: a copy of the shared beginning's keys and values, once the cache
        holds it and none is kept yet."""
        key, length = self._key(prepared), prepared.shared_prefix
        if key is None or key in self._kept or cache.get_seq_length() < length:
            return
        if any(layer.keys.shape[-2] != cache.get_seq_length() for layer in cache.layers):
            return  # a sliding window dropped the oldest positions (none does below 262,144 tokens)
        self._kept[key] = [
            (layer.keys[:, :, :length].clone(), layer.values[:, :, :length].clone()) for layer in cache.layers
        ]
        self._held += length
        while self._held > self.tokens:
            (_, ids), _ = self._kept.popitem(last=False)
            self._held -= len(ids)

    def _key(self, prepared: PreparedPrompt) -> tuple | None:
        switch = self.runner.longrope_switch_at
        too_long = prepared.shared_prefix > self.tokens or (switch is not None and prepared.prompt_tokens > switch)
        if not prepared.shared_prefix or too_long:
            return None
        return prepared.adapter, tuple(prepared.input_ids[0, : prepared.shared_prefix].tolist())
