"""Prompt beginnings that requests share, kept as keys and values so that a new request's prefill
starts after the longest one it begins with. Two are kept per request:

- its system turn (PreparedPrompt.shared_prefix): the service's safety prompt opens every
  conversation, 128 of a short question's 137 tokens;
- a text-only prompt whole but its last token: a conversation's next turn re-sends it, followed
  by the answer and the new question, so the next turn prefills only those. A prompt with an
  image or audio is not kept whole: its placeholders' ids are the same whatever the media, and
  the keys after them depend on the media.

On a GPU that is milliseconds of prefill; on a CPU at full size, seconds before the first token
(bench/prefix_cache.py measures it). An entry is keyed by its exact token ids and the adapter
the request runs under (a LoRA changes every layer's keys and values). A prompt past the
long-RoPE switch neither uses nor gives one: its rotary frequencies, its beginning's included,
depend on its length. The entries hold at most `tokens` tokens in all (memory: at the released
shapes in bf16, 128 KiB a token), the oldest-used dropped first; each is a copy, and each use
copies it again, so no request's cache shares memory with another's.
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
        # (adapter, token ids) -> each layer's (keys, values) for those ids
        self._kept: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._held = 0  # tokens kept now

    def start(self, prepared: PreparedPrompt) -> DynamicCache:
        """A cache for the prompt's prefill: the longest kept beginning of it (its length counted
        in `prepared.cached_tokens`), else empty. Never the whole prompt: its last token's logits
        are needed."""
        if not self._usable(prepared) or not self._kept:
            return self.runner.new_cache()
        ids = tuple(prepared.input_ids[0, : prepared.prompt_tokens - 1].tolist())
        found = [
            key
            for key in self._kept
            if key[0] == prepared.adapter and len(key[1]) <= len(ids) and ids[: len(key[1])] == key[1]
        ]
        if not found:
            return self.runner.new_cache()
        key = max(found, key=lambda key: len(key[1]))
        self._kept.move_to_end(key)
        prepared.cached_tokens = len(key[1])
        copies = [(keys.clone(), values.clone()) for keys, values in self._kept[key]]
        return DynamicCache(ddp_cache_data=copies, config=self.runner.model.config)

    def keep(self, prepared: PreparedPrompt, cache: DynamicCache) -> None:
        """After a prefill chunk: copies of the beginnings the cache now holds (the system turn;
        a text-only prompt whole but its last token, once it is all in) that are not kept yet."""
        if not self._usable(prepared):
            return
        done = cache.get_seq_length()
        if any(layer.keys.shape[-2] != done for layer in cache.layers):
            return  # a sliding window dropped the oldest positions (none does below 262,144 tokens)
        whole = prepared.prompt_tokens - 1 if not prepared.media_end and done == prepared.prompt_tokens else 0
        for length in {prepared.shared_prefix, whole} - {0}:
            if length <= min(done, self.tokens):
                self._keep(prepared, cache, length)

    def _keep(self, prepared: PreparedPrompt, cache: DynamicCache, length: int) -> None:
        key = (prepared.adapter, tuple(prepared.input_ids[0, :length].tolist()))
        if key in self._kept:
            return
        self._kept[key] = [
            (layer.keys[:, :, :length].clone(), layer.values[:, :, :length].clone()) for layer in cache.layers
        ]
        self._held += length
        while self._held > self.tokens:
            (_, ids), _ = self._kept.popitem(last=False)
            self._held -= len(ids)

    def _usable(self, prepared: PreparedPrompt) -> bool:
        switch = self.runner.longrope_switch_at
        return self.tokens > 0 and (switch is None or prepared.prompt_tokens <= switch)
