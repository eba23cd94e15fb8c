"""One request inside the decode loop (engine/scheduler.py): its inputs, the queue its reader
takes tokens from, and the answer so far."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from engine.decode import PreparedPrompt
from engine.request import GenerationRequest
from engine.sampling import Sampler, choose_rows
from engine.text_stream import StopWatch


@dataclass(eq=False)  # rows are compared by identity (their fields hold tensors)
class Row:
    request: GenerationRequest
    prepared: PreparedPrompt
    sampler: Sampler
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)  # token ids; None = stopped; or an error
    done: threading.Event = field(default_factory=threading.Event)  # no more tokens are wanted
    tokens: list[int] = field(default_factory=list)  # the answer so far
    home: object = None  # the row_caches kind holding its cache
    prefill_cache: DynamicCache | None = None  # its prompt so far, while it is prefilled chunk by chunk
    stops: StopWatch | None = None  # its stop strings, where it has any
    # a token the next step feeds in place of one chosen in its round: the prompt's last (the prompt
    # was found kept whole but that token, engine/prefix_cache.py, so it joined without a prefill),
    # then the first token, chosen and sent as soon as that step's logits came
    fed: int | None = None
    _ids: torch.Tensor | None = None  # prompt + answer as far as it was last built

    def put(self, item) -> None:
        """Queues a token id, None (stopped) or an error, and tells the reader; an item after which
        no token follows (the answer's end token or length cap: `done` is set first) is the last."""
        self.out.put(item)
        if self.request.on_token is not None:
            self.request.on_token(self.done.is_set() or not isinstance(item, int))

    @property
    def leaving(self) -> bool:
        return self.done.is_set() or self.request.cancel.is_set()

    @property
    def ids(self) -> torch.Tensor:
        """(1, n) prompt + answer, for what reads the whole history (penalties, a grammar, a long
        row's forward pass). Built when read, extending the last one built."""
        built = self.prepared.input_ids if self._ids is None else self._ids
        missing = self.prepared.prompt_tokens + len(self.tokens) - built.shape[1]
        if missing:
            built = torch.cat([built, built.new_tensor([self.tokens[-missing:]])], dim=1)
        self._ids = built
        return built


def next_tokens(rows: list[Row], logits: torch.Tensor) -> torch.Tensor:
    """Each row's token for the next step, (rows,): chosen from its logits (one vectorised pass,
    engine/sampling.py), or its `fed` token, which needs no choosing."""
    samplers = [row.sampler for row in rows]
    history = [row.ids if row.sampler.reads_history else None for row in rows]
    chosen = [i for i, row in enumerate(rows) if row.fed is None]
    if len(chosen) == len(rows):
        return choose_rows(samplers, history, logits)
    tokens = torch.tensor([row.fed or 0 for row in rows], device=logits.device)
    if chosen:
        tokens[chosen] = choose_rows([samplers[i] for i in chosen], [history[i] for i in chosen], logits[chosen])
    return tokens
