"""Where the scheduler's rows keep their KV caches, and how each kind takes a decode step. Three
kinds, one seam (engine/scheduler.py drives it):

    rows.reserve(row)                         # room for a row whose prompt is being prefilled
    rows.adopt(row, cache)                    # its prefilled DynamicCache (batch 1) moves in
    logits, failed = rows.step(members, tokens)
                                              # append tokens[i] to members[i] -> (n - len(failed), vocab)
    rows.release(row)                         # the row's cache is free again

- `SlotRows`: the static slot cache and its one step per batch bucket (engine/slot_decoder.py),
  compiled or eager; every adapter mix in one graph. Rows that fit its capacity.
- `PaddedRows`: transformers' DynamicCache, rows left-padded to one length (the dynamic path:
  CPUs, quantized models, or no slot free).
- `OwnRows`: each row alone on its own DynamicCache, for rows whose prompt plus answer crosses
  the long-RoPE switch (4,096 tokens), which changes the rotary frequencies for the whole batch.

A failed step is retried row by row; a row that fails alone is returned in `failed` with its
error, the others' logits come back as if nothing had happened (an out-of-memory also gives the
allocator's cache back).
"""

from __future__ import annotations

import logging

import torch
from transformers import DynamicCache

from core.errors import release_memory
from engine.output_head import LogitsBlock, writing_into
from engine.roomy_cache import roomy_cache, stacked_cache
from engine.slot_decoder import SlotDecoder

log = logging.getLogger(__name__)


class SlotRows:
    def __init__(self, runner, decoder: SlotDecoder):
        self.runner, self.decoder = runner, decoder

    def takes(self, row) -> bool:
        return self.decoder.free > 0 and self.decoder.fits(row.prepared.prompt_tokens, row.prepared.max_new_tokens)

    def reserve(self, row) -> None:
        self.decoder.attach(row, row.prepared.adapter)

    def adopt(self, row, cache: DynamicCache) -> None:
        self.decoder.load(row, [(layer.keys, layer.values) for layer in cache.layers])

    def step(self, members: list, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        try:
            with self.runner.turn(None):
                return self.decoder.step(tokens, members), {}
        except Exception as err:  # noqa: BLE001 - find the row that fails, if any
            _retrying(err)
        # a failed step advanced no row (lengths move after the forward pass): each row steps alone
        logits, failed = [], {}
        for i, row in enumerate(members):
            try:
                with self.runner.turn(None):
                    logits.append(self.decoder.step(tokens[i : i + 1], [row]))
            except Exception as err:  # noqa: BLE001
                failed[row] = err
        return _stacked(logits, tokens), failed

    def release(self, row) -> None:
        self.decoder.release(row)


class PaddedRows:
    """Rows left-padded to a common cache length; the attention mask hides the padding and each
    row keeps its own positions, so every row computes what it would compute alone."""

    def __init__(self, runner):
        self.runner = runner
        self.members: list = []  # in the cache's row order
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (B, L) True: a real token, False: left padding
        self._lengths: torch.Tensor | None = None  # (B,) real tokens cached per row
        # each step's logits, on a CPU (engine/output_head.py): read before the next step writes
        self._logits_block = LogitsBlock()

    def takes(self, row) -> bool:
        switch = self.runner.longrope_switch_at
        return switch is None or row.prepared.prompt_tokens + row.prepared.max_new_tokens <= switch

    def reserve(self, row) -> None:
        pass  # the batch grows when the row is adopted

    def adopt(self, row, cache: DynamicCache) -> None:
        self._join(row, cache)

    def step(self, members: list, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        assert members == self.members, "a padded batch steps all its rows together"
        mask = torch.cat([self._mask, self._mask.new_ones(len(members), 1)], dim=1)
        # one row has no padding (release trims it): the model's own positions and causal mask are
        # then exact, and building a padded mask per step costs ~15 % of a small step
        padded = (
            {}
            if len(members) == 1
            else {"attention_mask": self._as_attention_takes(mask), "position_ids": self._lengths[:, None]}
        )
        try:
            with self.runner.turn([row.prepared.adapter for row in members]), writing_into(self._logits_block):
                out = self.runner.model(
                    input_ids=tokens.view(-1, 1), past_key_values=self._cache, use_cache=True, **padded
                )
        except Exception as err:  # noqa: BLE001 - find the row that fails, if any
            _retrying(err)
            return self._step_each(tokens)
        self._mask, self._lengths = mask, self._lengths + 1
        return out.logits[:, -1, :], {}

    def _as_attention_takes(self, mask: torch.Tensor) -> torch.Tensor:
        """The (rows, keys) mask for this step's attention. sdpa's own form, (rows, 1, 1, keys), True
        where a row attends, transformers uses as it is, where from the 2D one it builds that each
        step through its general mask functions (~5 % of a 16-row step, this CPU). Other kernels
        want the 2D mask: eager adds its mask to the scores, flash-attention unpads by it."""
        if getattr(self.runner.model.config, "_attn_implementation", None) == "sdpa":
            return mask[:, None, None, :]
        return mask

    def release(self, row) -> None:
        if row not in self.members:
            return
        keep = [i for i, member in enumerate(self.members) if member is not row]
        self.members = [self.members[i] for i in keep]
        if not keep:
            self._cache = self._mask = self._lengths = None
            return
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask[index]
        start = int((~mask.any(dim=0)).long().cumprod(dim=0).sum())  # columns that are padding in every row
        rows = [
            [(keys[i : i + 1, :, start:], values[i : i + 1, :, start:]) for keys, values in _layers(self._cache)]
            for i in keep
        ]
        self._cache = stacked_cache(self.runner.model.config, rows)
        self._mask, self._lengths = mask[:, start:], self._lengths[index]

    def _dynamic(self, layers) -> DynamicCache:
        return roomy_cache(self.runner.model.config, layers)

    def _join(self, row, cache: DynamicCache) -> None:
        length = cache.get_seq_length()
        mask = torch.ones(1, length, dtype=torch.bool, device=row.prepared.input_ids.device)
        if not self.members:
            self.members, self._cache, self._mask = [row], cache, mask
            self._lengths = torch.tensor([length], device=mask.device)
            return
        width = max(length, self._mask.shape[1])
        self._cache = stacked_cache(self.runner.model.config, [_layers(self._cache), _layers(cache)])
        self._mask = torch.cat([_left_pad(self._mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self._lengths = torch.cat([self._lengths, self._lengths.new_tensor([length])])
        self.members.append(row)

    def _step_each(self, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """After a failed batched step: each row takes it on its own slice of the cache (the failed
        pass left some layers one position longer; slicing to the old width undoes that), and the
        rows that succeed rejoin the batch in their order."""
        members, cache, mask, width = self.members, self._cache, self._mask, self._mask.shape[1]
        self.members, self._cache, self._mask, self._lengths = [], None, None, None
        logits, failed = [], {}
        for i, row in enumerate(members):
            start = int((~mask[i]).sum())  # left padding
            alone = self._dynamic(
                [
                    (layer.keys[i : i + 1, :, start:width], layer.values[i : i + 1, :, start:width])
                    for layer in cache.layers
                ]
            )
            try:
                with self.runner.turn([row.prepared.adapter]):
                    out = self.runner.model(
                        input_ids=tokens[i : i + 1].view(1, 1), past_key_values=alone, use_cache=True
                    )
            except Exception as err:  # noqa: BLE001
                failed[row] = err
                continue
            logits.append(out.logits[:, -1, :])
            self._join(row, alone)
        return _stacked(logits, tokens), failed


class OwnRows:
    """Each row on its own DynamicCache, stepped alone: `ModelRunner.forward` recomputes the whole
    sequence once when a row crosses the long-RoPE switch, as transformers' Phi-4 code intends."""

    def __init__(self, runner):
        self.runner = runner
        self.caches: dict = {}  # row -> its cache

    def takes(self, row) -> bool:
        return True

    def reserve(self, row) -> None:
        pass

    def adopt(self, row, cache: DynamicCache) -> None:
        self.caches[row] = cache

    def step(self, members: list, tokens: torch.Tensor) -> tuple[torch.Tensor, dict]:
        logits, failed = [], {}
        for i, row in enumerate(members):
            ids = torch.cat([row.ids, tokens[i : i + 1].view(1, 1)], dim=1)
            try:
                with self.runner.turn([row.prepared.adapter]):
                    step, self.caches[row] = self.runner.forward(row.prepared, ids, self.caches[row])
            except Exception as err:  # noqa: BLE001
                failed[row] = err
                continue
            logits.append(step)
        return _stacked(logits, tokens), failed

    def release(self, row) -> None:
        self.caches.pop(row, None)


def _retrying(err: Exception) -> None:
    log.warning("a batched decode step failed (%s); retrying each request alone", type(err).__name__)
    release_memory(err)


def _stacked(logits: list[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    return torch.cat(logits) if logits else torch.empty(0, 0, device=tokens.device)


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zeros before `tensor` along `dim` (the sequence axis) up to `width`."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
