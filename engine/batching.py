"""Continuous batching: concurrent requests are decoded together, one forward pass per step for
the whole batch, each row under its own LoRA adapter (engine/router.py's batched update), each
row's token chosen by one vectorised sampler (engine/sampling.py) and read back in one transfer.

A new request is prefilled alone (its media and prompt length are its own) and then joins the
running batch between two decode steps; a finished or cancelled request leaves it the same
way. Rows are left-padded to a common cache length; the attention mask hides the padding and
each row keeps its own positions, so every row computes what it would compute alone.

While only one request is running and it fits the engine's static KV cache, it is decoded on
the fast path instead (engine/static_decode.py: the static cache and compiled step): its cache
moves into the static one when the batch shrinks to it, and back out when another request joins.

Requests whose prompt plus answer would cross the long-RoPE switch (4,096 tokens) are decoded
alone (`DecodeBatcher.accepts`): that switch changes the rotary frequencies for the whole batch.
They still go through this loop, one step each per round, interleaved with the batch: no
request holds the model between two of its tokens, so none waits on another's reader.

One request's failure fails it alone: a failing prefill ends that request; a failing batched
step is retried row by row, and only a row that fails on its own gets the error (an
out-of-memory also gives the allocator's cache back). The others go on token-identical.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
from transformers import DynamicCache

from core.errors import ShuttingDown, release_memory
from engine.decode import PreparedPrompt
from engine.request import PENDING, GenerationRequest
from engine.sampling import Sampler, choose_rows
from engine.static_decode import StaticRun

log = logging.getLogger(__name__)


@dataclass(eq=False)  # rows are compared by identity (their fields hold tensors)
class Row:
    request: GenerationRequest
    prepared: PreparedPrompt
    sampler: Sampler
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # token ids; None = stopped; or an error
    done: threading.Event = field(default_factory=threading.Event)  # no more tokens are wanted
    cache: DynamicCache | None = None  # a long row's own cache (batch rows share the batcher's)
    tokens: list[int] = field(default_factory=list)  # the answer so far
    _ids: torch.Tensor | None = None  # prompt + answer as far as it was last built

    def put(self, item) -> None:
        self.out.put(item)
        if self.request.on_token is not None:
            self.request.on_token()

    @property
    def ids(self) -> torch.Tensor:
        """(1, n) prompt + answer, for what reads the whole history (a prefill, penalties, a
        grammar, the static cache). Built when read, extending the last one built: a batched
        step needs only the newest tokens, so it costs no per-row tensor work."""
        built = self.prepared.input_ids if self._ids is None else self._ids
        missing = self.prepared.prompt_tokens + len(self.tokens) - built.shape[1]
        if missing:
            built = torch.cat([built, built.new_tensor([self.tokens[-missing:]])], dim=1)
        self._ids = built
        return built


class DecodeBatcher:
    def __init__(self, engine, max_batch: int):
        self.engine = engine  # for its static decoder and its samplers; the model only through its runner
        self.runner = engine.runner
        self.max_batch = max_batch
        self.pending: list[Row] = []  # submitted, waiting to join the batch
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        # the running batch: rows, their shared cache, which cache positions are real, each row's length
        self.rows: list[Row] = []
        self.long: list[Row] = []  # rows past the long-RoPE switch: one step each per round, alone
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # (B, L) 1 = a real token, 0 = left padding
        self._lengths: torch.Tensor | None = None  # (B,) real tokens cached per row
        self._solo: StaticRun | None = None  # set while the one running row is on the static cache
        self._closing = False
        self.steps = 0  # batched decode steps so far
        self.rows_stepped = 0  # sum of batch sizes over those steps (mean batch = rows_stepped / steps)
        self.solo_steps = 0  # steps of a lone request on the static cache
        # time of batched steps outside the forward pass: inputs, sampling, hand-off (on a GPU the
        # read-back also waits for the device there)
        self.host_seconds = 0.0

    def accepts(self, prepared: PreparedPrompt) -> bool:
        switch = self.runner.longrope_switch_at
        return switch is None or prepared.prompt_tokens + prepared.max_new_tokens <= switch

    def submit(
        self, request: GenerationRequest, prepared: PreparedPrompt, sampler: Sampler | None = None
    ) -> Iterator[int]:
        row = Row(request, prepared, sampler or self.engine.sampler(request, prepared))
        with self._wake:
            if self._closing:
                raise ShuttingDown()
            self.pending.append(row)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="decode-batcher", daemon=True)
                self._thread.start()
                atexit.register(self.close)  # never kill the loop inside a forward pass at exit
            self._wake.notify()
        return self._tokens(row)

    def close(self, wait: bool = True) -> None:
        """Stops the loop between two steps; pending and running requests end with ShuttingDown."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)

    @staticmethod
    def _tokens(row: Row) -> Iterator[int]:
        try:
            while True:
                if row.request.on_token is not None and row.out.empty():
                    yield PENDING  # the caller is told of the next token (GenerationRequest.on_token)
                    continue
                if (item := row.out.get()) is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.done.set()  # finished, closed or cancelled: the loop drops the row at its next step

    # -- the decode loop (one thread) -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self.pending and not self.rows and not self.long and not self._closing:
                    self._wake.wait()
                if self._closing:
                    for row in self.rows + self.long + self.pending:
                        row.put(ShuttingDown())
                    self._reset()
                    self.long, self.pending = [], []
                    return
                room = self.max_batch - len(self.rows) - len(self.long)
                joining, self.pending = self.pending[:room], self.pending[room:]
            try:
                self._round(joining)
            except Exception as err:  # noqa: BLE001 - a fault outside any one row's forward pass
                log.exception("decode loop step failed")
                for row in set(self.rows + self.long + joining):
                    row.put(err)
                self._reset()
                self.long = []

    def _round(self, joining: list[Row]) -> None:
        """Joiners are prefilled, then one decode step for the batch and one for each long row."""
        for row in joining:
            if not self.accepts(row.prepared):
                self.long.append(row)  # prefilled by its first step
            else:
                self._alone(row, self._prefill, row, len(joining) == 1)
        self._drop_finished()
        if self.rows:
            self._decode_step()
            self._drop_finished()
        for row in list(self.long):
            self._alone(row, self._long_step, row)
        self._drop_finished()

    def _alone(self, row: Row, step, *args) -> None:
        """Runs a forward pass that only `row` depends on; if it fails, only `row` fails."""
        try:
            step(*args)
        except Exception as err:  # noqa: BLE001
            self._fail(row, err)

    def _fail(self, row: Row, err: Exception) -> None:
        log.error("one request failed in the decode loop", exc_info=err)
        row.put(err)
        row.done.set()
        if row in self.long:
            self.long.remove(row)
        row.cache = None
        release_memory(err)

    def _forward(self, adapters: list[str], **kwargs):
        """One forward pass of the model for rows under `adapters`, in the runner's turn."""
        with self.runner.turn(adapters):
            return self.runner.model(use_cache=True, **kwargs)

    def _choose(self, row: Row, logits: torch.Tensor) -> None:
        self._emit(row, int(row.sampler.choose(row.ids, logits)[0]))

    def _emit(self, row: Row, token: int) -> None:
        row.tokens.append(token)
        row.put(token)
        if self.runner.finished(row.prepared, len(row.tokens), token):
            row.done.set()  # the consumer will finish on this token: no step is wasted on the row

    def _prefill(self, row: Row, alone: bool) -> None:
        if row.done.is_set() or row.request.cancel.is_set():
            row.put(None)
            return
        runner = self.runner
        if alone and not self.rows and self.engine.static_fits(row.prepared):
            with runner.turn(None):  # the slot decoder applies the adapter itself
                solo = StaticRun.start(self.engine.static, row.prepared, row.sampler)
            self._solo, self.rows = solo, [row]
            return  # its first token comes from the decode step, like every later one
        with runner.turn([row.prepared.adapter]):
            logits, cache = runner.forward(row.prepared, row.ids, runner.new_cache())
        if self._solo is not None:
            self._leave_solo()
        self._choose(row, logits)
        self._join(row, cache)

    def _long_step(self, row: Row) -> None:
        """One step of a long row on its own cache (the engine's forward handles the long-RoPE switch)."""
        if row.done.is_set() or row.request.cancel.is_set():
            return
        with self.runner.turn([row.prepared.adapter]):
            logits, row.cache = self.runner.forward(row.prepared, row.ids, row.cache or self.runner.new_cache())
        self._choose(row, logits)

    def _decode_step(self) -> None:
        if self._solo is not None:
            try:
                with self.runner.turn(None):
                    token = self._solo.advance()
            except Exception as err:  # noqa: BLE001 - the lone row fails alone
                self._fail(self.rows[0], err)
                self._reset()
                return
            self.solo_steps += 1
            self._emit(self.rows[0], token)
            return
        began = time.perf_counter()
        last = torch.tensor([[row.tokens[-1]] for row in self.rows], device=self._mask.device)
        mask = torch.cat([self._mask, self._mask.new_ones(len(self.rows), 1)], dim=1)
        # one row has no padding (_drop_finished trims it): the model's own positions and causal
        # mask are then exact, and building a padded mask per step costs ~15 % of a small step
        padded = {} if len(self.rows) == 1 else {"attention_mask": mask, "position_ids": self._lengths[:, None]}
        try:
            forward_began = time.perf_counter()
            out = self._forward(
                [row.prepared.adapter for row in self.rows], input_ids=last, past_key_values=self._cache, **padded
            )
            forward_ended = time.perf_counter()
        except Exception as err:  # noqa: BLE001 - find the row that fails, if any
            log.warning("a batched decode step failed (%s); retrying each request alone", type(err).__name__)
            release_memory(err)
            self._step_rows_alone()
            return
        self._mask = mask
        self._lengths += 1
        self.steps += 1
        self.rows_stepped += len(self.rows)
        samplers = [row.sampler for row in self.rows]
        histories = [row.ids if row.sampler.reads_history else None for row in self.rows]
        for row, token in zip(self.rows, choose_rows(samplers, histories, out.logits[:, -1, :]).tolist()):
            self._emit(row, token)  # one read-back for every row's token
        self.host_seconds += (forward_began - began) + (time.perf_counter() - forward_ended)

    # -- batch membership: caches left-padded to one length ----------------------------------

    def _join(self, row: Row, cache: DynamicCache) -> None:
        length = cache.get_seq_length()
        device = row.prepared.input_ids.device
        mask = torch.ones(1, length, dtype=torch.long, device=device)
        if not self.rows:
            self.rows, self._cache, self._mask = [row], cache, mask
            self._lengths = torch.tensor([length], device=device)
            return
        width = max(length, self._mask.shape[1])
        layers = []
        for old, new in zip(self._cache.layers, cache.layers):
            layers.append(
                (
                    torch.cat([_left_pad(old.keys, width), _left_pad(new.keys, width)]),
                    torch.cat([_left_pad(old.values, width), _left_pad(new.values, width)]),
                )
            )
        self._cache = DynamicCache(ddp_cache_data=layers, config=self.runner.model.config)
        self._mask = torch.cat([_left_pad(self._mask, width, dim=1), _left_pad(mask, width, dim=1)])
        self._lengths = torch.cat([self._lengths, self._lengths.new_tensor([length])])
        self.rows.append(row)

    def _leave_solo(self) -> None:
        """The static cache's row becomes an ordinary batch row (another request is joining)."""
        row, layers = self.rows[0], self._solo.export()
        self._reset()
        self._join(row, DynamicCache(ddp_cache_data=layers, config=self.runner.model.config))

    def _step_rows_alone(self) -> None:
        """After a failed batched step: each row takes this step on its own slice of the cache
        (the failed pass left some layers one position longer; slicing to the old width undoes
        that). A row that fails alone gets the error; the others rejoin the batch."""
        rows, cache, mask, width = self.rows, self._cache, self._mask, self._mask.shape[1]
        self._reset()
        for i, row in enumerate(rows):
            start = int((mask[i] == 0).sum())  # left padding
            layers = [
                (layer.keys[i : i + 1, :, start:width], layer.values[i : i + 1, :, start:width])
                for layer in cache.layers
            ]
            alone = DynamicCache(ddp_cache_data=layers, config=self.runner.model.config)
            try:
                out = self._forward([row.prepared.adapter], input_ids=row.ids[:, -1:], past_key_values=alone)
            except Exception as err:  # noqa: BLE001
                self._fail(row, err)
                continue
            self._choose(row, out.logits[:, -1, :])
            self._join(row, alone)

    def _enter_solo(self) -> None:
        """The batch is down to one row: move its cache (no padding left) into the static one.
        If that fails, the row simply stays a one-row batch on the dynamic path."""
        row = self.rows[0]
        layers = [(layer.keys, layer.values) for layer in self._cache.layers]
        try:
            with self.runner.turn(None):
                solo = StaticRun.resume(self.engine.static, row.ids, row.sampler, layers, row.prepared.adapter)
        except Exception as err:  # noqa: BLE001
            log.warning(
                "moving a request onto the static cache failed (%s); it stays on the dynamic path", type(err).__name__
            )
            release_memory(err)
            return
        self._reset()
        self._solo, self.rows = solo, [row]

    def _drop_finished(self) -> None:
        for row in [r for r in self.long if r.done.is_set() or r.request.cancel.is_set()]:
            row.put(None)
            self.long.remove(row)
        keep = [i for i, row in enumerate(self.rows) if not (row.done.is_set() or row.request.cancel.is_set())]
        if len(keep) == len(self.rows):
            return
        for i, row in enumerate(self.rows):
            if i not in keep:
                row.put(None)  # a cancelled row's consumer sees the end; a finished one is gone
        if not keep:
            self._reset()
            return
        index = torch.tensor(keep, device=self._mask.device)
        mask = self._mask[index]
        start = int((mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())  # columns that are padding in every row
        layers = [(layer.keys[index, :, start:], layer.values[index, :, start:]) for layer in self._cache.layers]
        self._cache = DynamicCache(ddp_cache_data=layers, config=self.runner.model.config)
        self._mask, self._lengths = mask[:, start:], self._lengths[index]
        self.rows = [self.rows[i] for i in keep]
        if len(keep) == 1 and self.engine.static_fits(self.rows[0].prepared):
            self._enter_solo()

    def _reset(self) -> None:
        self.rows, self._cache, self._mask, self._lengths, self._solo = [], None, None, None, None


def _left_pad(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    """Zeros before `tensor` along `dim` (the sequence axis) up to `width`."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
