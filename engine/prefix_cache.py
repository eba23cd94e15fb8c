"""Prompt beginnings that requests share, kept as keys and values so that a new request's prefill
starts after the longest one it begins with. Two are kept per request:

- its system turn (PreparedPrompt.shared_prefix): the service's safety prompt opens every
  conversation, 128 of a short question's 137 tokens;
- its prompt whole but its last token: a conversation's next turn re-sends it, followed by the
  answer and the new question, so the next turn prefills only those. OpenAI-style clients send
  a conversation's photos and recordings again with every turn: those turns skip the encoders
  and the media's prefill too.

On a GPU that is milliseconds of prefill; on a CPU at full size, seconds before the first token
(bench/prefix_cache.py measures it). An entry is keyed by its exact token ids, the adapter the
request runs under (a LoRA changes every layer's keys and values) and, where its ids hold media
placeholders, a digest of the media (a placeholder's ids are the same whatever the photo; the
keys after it are not). One with media serves only a prompt with the very same media, all of it
inside the entry: a prompt that adds a photo feeds every photo's placeholders in one chunk, so it
starts at most after its system turn. A prompt past the
long-RoPE switch neither uses nor gives one: its rotary frequencies, its beginning's included,
depend on its length. The entries hold at most `tokens` tokens in all (memory: at the released
shapes in bf16, 128 KiB a token), the oldest-used dropped first; each is a copy, and each use
copies it again, so no request's cache shares memory with another's. Unless a setting names it,
`tokens` is what a share of the free memory holds (`room_for`): a fixed 4,096 held three photo
conversations' entries, and four conversations taking turns (text, photo, audio, both) each
dropped the entry the next one needed, so none was ever found.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict

import numpy as np
import torch
from transformers import DynamicCache

from engine.decode import ModelRunner, PreparedPrompt
from engine.memory_budget import free_bytes, kv_bytes_per_token
from engine.roomy_cache import roomy_cache

log = logging.getLogger(__name__)

# A guess, not measured on a GPU: the share of the memory free once the model and the static cache
# are in that kept prompt beginnings may take, leaving the rest to prefills and media encoders.
SHARE_OF_FREE = 0.1
MOST_TOKENS = 65_536  # a lookup compares the prompt with every entry: their number stays small
UNKNOWN_FREE_TOKENS = 4096  # where the free memory cannot be read


def room_for(engine) -> int:
    """Tokens the prefix cache may hold when no setting names it: what SHARE_OF_FREE of the
    device's free memory holds (the engine's dtype, its model's shapes), at most MOST_TOKENS."""
    free = free_bytes(engine.device)
    if free is None:
        return UNKNOWN_FREE_TOKENS
    tokens = min(MOST_TOKENS, int(free * SHARE_OF_FREE) // kv_bytes_per_token(engine.model, engine.dtype))
    log.info("prefix cache: up to %d tokens (a tenth of the %.1f GiB free)", tokens, free / 2**30)
    return tokens


class PrefixCache:
    def __init__(self, runner: ModelRunner, tokens: int):
        self.runner = runner
        self.tokens = tokens  # the most tokens kept, all entries together (0: none kept)
        # (adapter, media digest or "", token ids) -> each layer's (keys, values) for those ids
        self._kept: OrderedDict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self._held = 0  # tokens kept now

    def start(self, prepared: PreparedPrompt) -> DynamicCache:
        """A cache for the prompt's prefill: the longest kept beginning of it (its length counted
        in `prepared.cached_tokens`), else empty. Never the whole prompt: its last token's logits
        are needed."""
        if not self._usable(prepared) or not self._kept:
            return self.runner.new_cache()
        ids = tuple(prepared.input_ids[0, : prepared.prompt_tokens - 1].tolist())
        found = [key for key in self._kept if self._serves(key, prepared, ids)]
        if not found:
            return self.runner.new_cache()
        key = max(found, key=lambda key: len(key[2]))
        self._kept.move_to_end(key)
        prepared.cached_tokens = len(key[2])
        return roomy_cache(self.runner.model.config, self._kept[key])  # a copy

    def keep(self, prepared: PreparedPrompt, cache: DynamicCache) -> None:
        """After a prefill chunk: copies of the beginnings the cache now holds (the system turn;
        the prompt whole but its last token, once it is all in) that are not kept yet."""
        if not self._usable(prepared):
            return
        done = cache.get_seq_length()
        if any(layer.keys.shape[-2] != done for layer in cache.layers):
            return  # a sliding window dropped the oldest positions (none does below 262,144 tokens)
        # a prompt with media and no digest (prepared while the cache was off) keeps its system turn only
        whole = prepared.prompt_tokens - 1 if done == prepared.prompt_tokens else 0
        if prepared.media_end and not prepared.media_key:
            whole = 0
        for length in {prepared.shared_prefix, whole} - {0}:
            if length <= min(done, self.tokens):
                self._keep(prepared, cache, length)

    def _keep(self, prepared: PreparedPrompt, cache: DynamicCache, length: int) -> None:
        media = prepared.media_key if length >= prepared.media_end > 0 else ""  # a system turn has none
        key = (prepared.adapter, media, tuple(prepared.input_ids[0, :length].tolist()))
        if key in self._kept:
            return
        self._kept[key] = [
            (layer.keys[:, :, :length].clone(), layer.values[:, :, :length].clone()) for layer in cache.layers
        ]
        self._held += length
        while self._held > self.tokens:
            (_, _, ids), _ = self._kept.popitem(last=False)
            self._held -= len(ids)

    @staticmethod
    def _serves(key: tuple, prepared: PreparedPrompt, ids: tuple) -> bool:
        """Whether the entry `key` is a beginning of the prompt (`ids`: all but its last token).
        Ids without media placeholders need no more; with them, the same media: then the entry
        holds as many placeholders as the prompt has, all of them."""
        adapter, media, kept = key
        same_media = not media or media == prepared.media_key
        return adapter == prepared.adapter and same_media and ids[: len(kept)] == kept

    def _usable(self, prepared: PreparedPrompt) -> bool:
        switch = self.runner.longrope_switch_at
        return self.tokens > 0 and (switch is None or prepared.prompt_tokens <= switch)


def media_digest(images: list, audios: list, crops: int | None) -> str:
    """The prompt's media, as one digest (SHA-256 of every pixel and sample, in order, and the
    crop budget that shapes the image tokens): what a kept beginning with placeholders must match.
    Whole content, never a sample of it: two photos that agreed on a sample would share keys and
    values, and one user's answer would describe another's photo. About 6 ms a megapixel here."""
    digest = hashlib.sha256(f"{len(images)} images {len(audios)} clips, crops {crops}".encode())
    for image in images:
        digest.update(f"{image.mode} {image.size}".encode())
        digest.update(image.tobytes())
    for samples in audios:
        samples = np.ascontiguousarray(samples)
        digest.update(f"{samples.dtype} {samples.shape}".encode())
        digest.update(memoryview(samples).cast("B"))
    return digest.hexdigest()
