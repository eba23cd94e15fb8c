"""A DynamicCache whose layers keep spare room along the sequence: a decode step writes its token's
keys and values in place. transformers' DynamicLayer appends with `torch.cat`, which copies the
whole cache every step: with 16 rows of 1,500 tokens at the released shapes (128 KiB a token in
bf16) that is 3 GiB read and written per step. Attention reads the filled part as a view: the
same values, the same kernel. `bench/decode_step.py` on this CPU (8 of 32 layers, bf16): one row
with 3,000 tokens cached 262 -> 236 ms a step, four rows 469 -> 432 ms; at 500 tokens the same.
The engine never crops, reorders or beam-searches these caches (DynamicLayer's methods for that
would replace the views)."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer


def _room_for(length: int) -> int:
    """Spare positions to allocate past `length`: an eighth more (at least 32), so a row copies its
    cache once every length/8 steps instead of every step, and holds at most 1/8 more memory."""
    return max(32, length // 8)


class _Roomy:
    """Keys and values in buffers longer than what they hold; `keys`/`values` are the filled views."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self._allocate(key_states[..., :0, :], value_states[..., :0, :], new)
        elif self.keys.shape[-2] + new > self._key_room.shape[-2]:
            self._allocate(self.keys, self.values, self.keys.shape[-2] + new)
        length = self.keys.shape[-2]
        self._key_room[..., length : length + new, :] = key_states
        self._value_room[..., length : length + new, :] = value_states
        self._fill(length + new)
        return self.keys, self.values

    def stack(self, parts: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> None:
        """Holds `parts` (each batch-first keys and values) one after the other along the rows, each
        left-padded with zeros to `width` positions: each written once, straight into its place."""
        keys, values = parts[0]
        self.lazy_initialization(keys, values)
        rows, size = sum(part[0].shape[0] for part in parts), width + _room_for(width)
        self._key_room = keys.new_zeros((rows, *keys.shape[1:-2], size, keys.shape[-1]))
        self._value_room = values.new_zeros((rows, *values.shape[1:-2], size, values.shape[-1]))
        start = 0
        for keys, values in parts:
            end, length = start + keys.shape[0], keys.shape[-2]
            self._key_room[start:end, ..., width - length : width, :] = keys
            self._value_room[start:end, ..., width - length : width, :] = values
            start = end
        self._fill(width)

    def _allocate(self, keys: torch.Tensor, values: torch.Tensor, needed: int) -> None:
        """New buffers for `needed` positions and room past them, holding `keys`/`values` first. At
        most the old cache and the new one exist at once, as with a concatenation."""
        size, length = needed + _room_for(needed), keys.shape[-2]
        self._key_room = keys.new_empty((*keys.shape[:-2], size, keys.shape[-1]))
        self._value_room = values.new_empty((*values.shape[:-2], size, values.shape[-1]))
        self._key_room[..., :length, :] = keys
        self._value_room[..., :length, :] = values
        self._fill(length)

    def _fill(self, length: int) -> None:
        self.keys, self.values = self._key_room[..., :length, :], self._value_room[..., :length, :]
        self.cumulative_length = length  # what a sliding layer counts (roomy ones never slide)


class RoomyLayer(_Roomy, DynamicLayer):
    pass


class RoomySlidingLayer(_Roomy, DynamicSlidingWindowLayer):
    """For a config with a sliding window longer than any sequence it can take (the released Phi-4
    config.json: a window of 262,144 against 131,072 positions), where the layers transformers makes
    are sliding ones that never slide: the masks and sizes it derives from them stay the same."""


def roomy_cache(config, layers: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> DynamicCache:
    """A DynamicCache with room to grow, empty or holding `layers` (each layer's keys and values,
    copied); a plain one where a layer could slide within the model's positions."""
    cache = DynamicCache(config=config)
    window = getattr(config, "sliding_window", None)
    if window is not None and window <= config.max_position_embeddings:
        return DynamicCache(ddp_cache_data=layers, config=config) if layers else cache
    cache.layers = [
        RoomySlidingLayer(made.sliding_window) if made.is_sliding else RoomyLayer() for made in cache.layers
    ]
    for layer, (keys, values) in zip(cache.layers, layers or []):
        layer.update(keys, values)
    return cache


def stacked_cache(config, blocks: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> DynamicCache:
    """One cache with room to grow holding `blocks` (each: every layer's batch-first keys and values)
    one after the other along the rows, each left-padded with zeros to the longest
    (engine/row_caches.py: a batch that a row joins or leaves). Each block is copied once."""
    width = max(block[0][0].shape[-2] for block in blocks)
    stacked = roomy_cache(config)
    layers = list(zip(*blocks))  # layer i -> every block's (keys, values)
    if not isinstance(stacked.layers[0], _Roomy):  # a layer that could slide: transformers' own
        return roomy_cache(config, [_stacked(parts, width) for parts in layers])
    for layer, parts in zip(stacked.layers, layers):
        layer.stack(list(parts), width)
    return stacked


def _stacked(parts: list[tuple[torch.Tensor, torch.Tensor]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values stacked along the rows, each left-padded with zeros to `width`."""
    keys, values = (
        torch.cat([torch.nn.functional.pad(tensor, (0, 0, width - tensor.shape[-2], 0)) for tensor in tensors])
        for tensors in zip(*parts)
    )
    return keys, values
