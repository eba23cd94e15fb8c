"""The static KV cache with row slots, and one decode step for every batch and adapter mix.

The cache is `rows x capacity` per layer, allocated once; each row holds one request at its own
length (its positions and its attention mask are its own). A decode step runs the first `bucket`
rows (1, 2, 4, 8 or 16, as vLLM does), so the rows in use are kept packed at the front: `release`
moves the last row into the freed one. Rows of a bucket that hold no request compute garbage into
their own free row, which nothing reads. Each row's LoRA adapter is a row of a one-hot tensor
(engine/router.py `by_rows`) read inside the step, so a change of mix never recompiles.

Compiled, that is two graphs: batch 1, and one whose batch size is symbolic for every larger
bucket (dynamo always specialises a size of 1); on a GPU, CUDA graphs then record one replay per
bucket, which costs no compiling. Start-up compiles and warms every bucket (`warm_up`).

The seam a scheduler drives (every call inside the runner's turn, engine/decode.py):

    logits = decoder.admit(slot, prepared)    # prefill a request into a free slot -> (1, vocab)
    logits = decoder.step(tokens, slots)      # append tokens[i] to slots[i] -> (len(slots), vocab)
    decoder.release(slot)                     # the slot is free again

`slot` is the caller's name for a request (any hashable); where it lives is this module's business.
"""

from __future__ import annotations

import logging
import time

import torch
from transformers.cache_utils import Cache, StaticLayer

from core.cpu_threads import keep_compile_device_guard
from core.errors import AdapterMissing
from engine.decode import ModelRunner, PreparedPrompt
from engine.model_family import PHI4, Phi4Family
from engine.router import BASE

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8, 16)


def bucket_of(rows: int) -> int:
    return next(b for b in BUCKETS if b >= rows)


class SlotLayer(StaticLayer):
    """One layer's keys and values, `rows x capacity`; a step writes each row at its own length."""

    def __init__(self, max_cache_len: int, lengths: torch.Tensor):
        super().__init__(max_cache_len=max_cache_len)
        self.lengths = lengths  # the cache's (rows,) tensor, shared by every layer

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        rows, heads, _, dim = key_states.shape  # one new token per row
        where = self.lengths[:rows].view(rows, 1, 1, 1).expand(rows, heads, 1, dim)
        self.keys[:rows].scatter_(2, where, key_states)
        self.values[:rows].scatter_(2, where, value_states)
        return self.keys[:rows], self.values[:rows]


class SlotCache(Cache):
    """transformers' Cache interface over SlotLayers. Plain layers only: the released config's
    `sliding_window` (262,144) is longer than any capacity here, so it never slides."""

    def __init__(self, config, rows: int, capacity: int, dtype: torch.dtype, device: torch.device):
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)  # tokens cached per row
        text = config.get_text_config(decoder=True)
        super().__init__(layers=[SlotLayer(capacity, self.lengths) for _ in range(text.num_hidden_layers)])
        head_dim = text.hidden_size // text.num_attention_heads
        self.early_initialization(rows, text.num_key_value_heads, head_dim, dtype, device)
        torch._dynamo.mark_static_address(self.lengths)


class SlotDecoder:
    def __init__(
        self,
        runner: ModelRunner,
        dtype: torch.dtype,
        device: torch.device,
        rows: int,
        capacity: int,
        compiled: bool,
        family: Phi4Family = PHI4,
    ):
        self.runner, self.model = runner, runner.model
        self.dtype, self.device = dtype, device
        window = getattr(self.model.config.get_text_config(decoder=True), "sliding_window", None)
        self.capacity = min(capacity, window or capacity)  # tokens a row holds: prompt + answer must fit
        if rows not in BUCKETS:
            raise ValueError(f"rows must be one of the batch buckets {BUCKETS}, not {rows}")
        self.rows = rows
        self.buckets = [b for b in BUCKETS if b <= rows]
        self.cache = SlotCache(self.model.config, rows, self.capacity, dtype, device)
        adapters = runner.router.adapters
        self.weights = torch.zeros(rows, max(len(adapters), 1), dtype=dtype, device=device)  # rows' adapters
        torch._dynamo.mark_static_address(self.weights)
        self._positions = torch.arange(self.capacity, device=device)
        self._slots: list = []  # row i holds the request the caller calls _slots[i]
        self._lengths: list[int] = []  # the host's copy of cache.lengths for the rows in use
        self.cuda_graphs = compiled and device.type == "cuda"
        self._decode_fn = self._decode
        with torch.inference_mode():  # like every other step input: a graph guards on the kind of tensor
            self._ones = torch.ones(rows, dtype=torch.long, device=device)  # every row of a bucket advances
        self.uncompiled: list[str] = []  # steps that failed to compile and run eagerly instead
        if compiled:
            family.prepare_for_compile(self.model, dtype, device)  # engine/model_family.py
            keep_compile_device_guard()  # the compile may run on a thread that ends (core/cpu_threads.py)
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 32)
            self._decode_fn = torch.compile(
                self._decode, fullgraph=True, dynamic=False, mode="reduce-overhead" if self.cuda_graphs else None
            )

    # -- the seam -------------------------------------------------------------------------------

    def fits(self, prompt_tokens: int, max_new_tokens: int) -> bool:
        return prompt_tokens + max_new_tokens <= self.capacity

    @property
    def free(self) -> int:
        return self.rows - len(self._slots)

    def admit(self, slot, prepared: PreparedPrompt) -> torch.Tensor:
        """Prefills `prepared` (media merged) into a free row for `slot` -> its next-token logits.
        Eager, into an exact-size cache that is then copied in: attention over the prompt alone is
        faster than over the whole static cache (bench/RESULTS.md)."""
        self.attach(slot, prepared.adapter)
        row = len(self._slots) - 1
        try:
            with self.runner.router.by_rows(self.weights[row : row + 1]):
                logits, cache = self.runner.forward(prepared, prepared.input_ids, self.runner.new_cache())
        except BaseException:
            self.release(slot)
            raise
        self.load(slot, [(layer.keys, layer.values) for layer in cache.layers])
        return logits.float()

    def step(self, tokens: torch.Tensor, slots: list) -> torch.Tensor:
        """Appends tokens[i] ((n,) or (n, 1), on the device) to slots[i] -> (n, vocab) logits."""
        rows = [self._slots.index(slot) for slot in slots]
        bucket = bucket_of(len(self._slots))
        with torch.inference_mode():  # an inference tensor, whoever made it: graphs guard on the kind
            tokens = tokens.reshape(-1) if tokens.is_inference() else tokens.reshape(-1).clone()
        if rows == list(range(bucket)):  # every row of the bucket steps (a lone request, a full batch)
            batch, advance = tokens[:, None], None
        else:
            index = torch.tensor(rows, device=self.device)
            batch = tokens.new_zeros(bucket, 1).index_copy_(0, index, tokens[:, None])
            advance = torch.zeros(bucket, dtype=torch.long, device=self.device).index_fill_(0, index, 1)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's logits are consumed
        logits = self._run(batch, self._ones[:bucket] if advance is None else advance)
        for row in rows:
            self._lengths[row] += 1
        return logits if advance is None else logits[index]

    def release(self, slot) -> None:
        """Frees `slot`'s row (if it holds one); the last row in use moves into it, so the rows in
        use stay packed."""
        if slot not in self._slots:
            return
        row, last = self._slots.index(slot), len(self._slots) - 1
        if row != last:
            length = self._lengths[last]
            for layer in self.cache.layers:
                layer.keys[row, :, :length].copy_(layer.keys[last, :, :length])
                layer.values[row, :, :length].copy_(layer.values[last, :, :length])
            self.cache.lengths[row] = length
            self.weights[row].copy_(self.weights[last])
            self._slots[row], self._lengths[row] = self._slots[last], length
        self.cache.lengths[last] = 0
        self.weights[last].zero_()
        self._slots.pop()
        self._lengths.pop()

    def attach(self, slot, adapter: str) -> None:
        """Takes a free row for `slot` under `adapter`, empty until `load` fills it (a prompt
        prefilled elsewhere, chunk by chunk)."""
        if slot in self._slots or not self.free:
            raise RuntimeError(f"slot {slot!r} is taken" if slot in self._slots else "every slot is taken")
        self._set_adapter(len(self._slots), adapter)
        self._slots.append(slot)
        self._lengths.append(0)

    def load(self, slot, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Copies a batch-1 (keys, values) per layer into `slot`'s row."""
        row, length = self._slots.index(slot), layers[0][0].shape[2]
        for layer, (keys, values) in zip(self.cache.layers, layers):
            layer.keys[row, :, :length].copy_(keys[0])
            layer.values[row, :, :length].copy_(values[0])
        self.cache.lengths[row] = length
        self._lengths[row] = length

    # -- the step (what torch.compile sees) -----------------------------------------------------

    def _decode(self, tokens: torch.Tensor, advance: torch.Tensor) -> torch.Tensor:
        bucket = tokens.shape[0]
        lengths = self.cache.lengths[:bucket]
        positions = lengths[:, None]  # each row's next position: what it has cached
        # each row sees its own cached tokens and the new one (at `positions`), nothing else
        visible = self._positions[None, :] <= positions
        mask = torch.zeros(visible.shape, dtype=self.dtype, device=tokens.device)
        mask = mask.masked_fill(~visible, torch.finfo(self.dtype).min)[:, None, None, :]
        out = self.model(
            input_ids=tokens, position_ids=positions, attention_mask=mask, past_key_values=self.cache, use_cache=True
        )
        lengths.add_(advance)
        return out.logits[:, -1].float()

    def _run(self, tokens: torch.Tensor, advance: torch.Tensor) -> torch.Tensor:
        if len(tokens) > 1:
            # one graph for every bucket past 1 (size 1 is always a graph of its own in dynamo); CUDA
            # graphs still record one replay per bucket, which costs no compiling
            torch._dynamo.mark_dynamic(tokens, 0, min=2, max=self.rows)
            torch._dynamo.mark_dynamic(advance, 0, min=2, max=self.rows)
        try:
            with self.runner.router.by_rows(self.weights):
                return self._decode_fn(tokens, advance)
        except Exception as err:  # noqa: BLE001 - a model or PyTorch build that will not compile still answers
            if self._decode_fn is self._decode:
                raise
            log.warning("torch.compile failed for the decode step (%s); running it uncompiled", err)
            self.uncompiled.append("decode")  # compiling fails before the graph runs: the cache is as it was
            self._decode_fn = self._decode
            with self.runner.router.by_rows(self.weights):
                return self._decode(tokens, advance)

    def _set_adapter(self, row: int, adapter: str) -> None:
        adapters = self.runner.router.adapters
        if adapter != BASE and adapter not in adapters:
            raise AdapterMissing(f"The {adapter!r} LoRA adapter is not loaded; refusing to answer without it.")
        self.weights[row].zero_()
        if adapter != BASE:
            self.weights[row, adapters.index(adapter)] = 1

    # -- start-up ---------------------------------------------------------------------------------

    def warm_up(self, progress=log.info) -> None:
        """Compiles (or loads from the compile cache) every bucket's graph now, so no request waits
        for it and nothing compiles while other threads serve requests (tracing overlapping them
        crashed the process in bench/asr.py). Call in the runner's turn, with no slot in use."""
        for bucket in self.buckets:
            began = time.perf_counter()
            self.cache.lengths[:bucket] = 1
            tokens = torch.zeros(bucket, 1, dtype=torch.long, device=self.device)
            for _ in range(3):  # CUDA graphs record on the second or third call
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                self._run(tokens, self._ones[:bucket])
            self.cache.lengths.zero_()
            progress(f"decode step, batch {bucket}: ready in {time.perf_counter() - began:.1f} s")
