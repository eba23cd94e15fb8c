"""The one engine protocol: what the conversation service, the server and the CLI may use of an
engine, kept alike by this process's own model (engine/engine.py) and by a remote
OpenAI-compatible server (engine/remote.py, `--backend openai`)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections import Counter
from typing import Iterator

from engine.counters import EngineCounters
from engine.request import Chunk, GenerationRequest, Metrics


class OpenStream:
    """Items from a generator that depends on something already open (a remote response, an
    engine's stream): `close()` closes that too, even before the first item was asked for, where
    closing the generator alone would run none of its `finally`."""

    def __init__(self, items: Iterator, held):
        self._items, self._held = items, held

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        if close := getattr(self._held, "close", None):
            close()


class ChatEngine(ABC):
    device: object  # where the forward passes run: a torch.device, or "remote <url>"
    adapters: tuple[str, ...]  # the LoRA adapters it can answer with
    concurrency: int  # requests worth having in flight at once
    decode_mode: str  # the decode path serving requests (compiled, static, dynamic; "remote")
    decode_fallback: str | None  # why a chosen fast path is not serving, if it is not
    counters: EngineCounters  # finish reasons and tokens generated, for /health and /metrics
    pushes: bool = False  # honours GenerationRequest.on_token (its streams never wait)

    @abstractmethod
    def stream(self, request: GenerationRequest) -> Iterator[Chunk]:
        """Chunks of the answer; the last has `finish_reason` and `metrics`. A request that is
        refused (bad input, limits, the remote's 4xx) raises on the call itself, before any chunk
        is asked for; closing the iterator (or `request.cancel`) stops generating, even unstarted."""

    @abstractmethod
    def close(self) -> None:
        """Graceful stop: refuse new requests and end open ones. Never blocks."""

    def generate(self, request: GenerationRequest) -> tuple[str, list[int], Chunk]:
        """Whole answer at once: (text, token ids (none from a remote engine), final chunk)."""
        chunks = list(self.stream(request))
        return "".join(c.text for c in chunks), [t for c in chunks for t in c.token_ids], chunks[-1]

    @property
    def finished(self) -> Counter[str]:
        """Finish reasons so far (stop, length, cancelled, error)."""
        return self.counters.finished

    @property
    def tokens_generated(self) -> int:
        return self.counters.tokens_generated

    def last_chunk(
        self,
        text: str,
        token_ids: list[int],
        adapter: str,
        finish: str,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
        first_token_at: float | None,
        cached_tokens: int = 0,
    ) -> Chunk:
        """An answer's last chunk: its finish reason counted, its metrics measured from `started`
        (the request's arrival) and `first_token_at` (None: no token came)."""
        ended = time.perf_counter()
        first = first_token_at or ended
        decode_time = ended - first
        self.counters.finish(finish)
        return Chunk(
            text,
            token_ids,
            adapter,
            finish,
            Metrics(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                ttft_s=first - started,
                tokens_per_s=(completion_tokens - 1) / decode_time if decode_time > 0 else 0.0,
                adapter=adapter,
                cached_tokens=cached_tokens,
            ),
        )
