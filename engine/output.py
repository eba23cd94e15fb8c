"""Output processing: the decode loop's token ids -> text chunks (detokenising, stop strings, the
length cap, logprobs, the finish reason and metrics). Runs in the consumer's thread, off the loop."""

from __future__ import annotations

import logging
import time
from typing import Iterator

from core.errors import ShuttingDown, generation_failed
from engine.decode import PreparedPrompt
from engine.request import PENDING, Chunk, GenerationRequest, TokenLogprob
from engine.sampling import Sampler
from engine.text_stream import IncrementalDetokenizer, StopMatcher

log = logging.getLogger(__name__)


class OutputProcessing:
    """The engine's output part (a mixin of engine/engine.py's Engine): it reads the engine's
    tokenizer, runner.end_ids and counters, and its protocol's `last_chunk`."""

    def _logprobs(self, sampler: Sampler, token_ids: list[int]) -> list[TokenLogprob] | None:
        """The sampler's record of these tokens, with their text, when the request asked for it."""
        if sampler.logprobs is None:
            return None
        entries = [sampler.chosen.popleft() for _ in token_ids]

        def text(token: int) -> str:
            return self.tokenizer.decode([token])

        # a grammar leaves some tokens no chance at all (-inf, which JSON cannot carry): those are no
        # alternatives, so a position may list fewer than `top_logprobs`
        return [
            TokenLogprob(text(t), lp, [(text(i), v) for i, v in top if v != float("-inf")]) for t, lp, top in entries
        ]

    def _chunks(
        self,
        request: GenerationRequest,
        prepared: PreparedPrompt,
        tokens: Iterator[int],
        started: float,
        sampler: Sampler,
    ) -> Iterator[Chunk]:
        """Token ids -> text chunks: detokenising, stop strings, the length cap, finish reason and
        metrics. Runs in the consumer's thread, off the decode loop. Closing `tokens` tells the
        producer this request is done."""
        adapter = prepared.adapter
        # A reader that is told of tokens (it steps when woken) gets every token ready at once in
        # one chunk: one event for the HTTP layer instead of one per token
        together = self.pushes and request.on_token is not None
        held: Chunk | None = None  # such tokens' chunk, not handed on yet
        detokenizer = IncrementalDetokenizer(self.tokenizer)
        stops = StopMatcher(request.params.stop)
        completion: list[int] = []
        first_token_at, ended = None, False
        try:
            while True:
                try:
                    token = next(tokens, None)
                except Exception as err:  # this request failed; the engine and other requests go on
                    if not isinstance(err, ShuttingDown):
                        log.error("generation failed for one request", exc_info=err)
                    self.counters.finish("error")
                    if held is not None:  # what came before the failure is the reader's
                        yield held
                    raise generation_failed(err) from None
                if token is PENDING:  # nothing ready yet (GenerationRequest.on_token)
                    if held is not None:
                        yield held
                        held = None
                    yield PENDING
                    continue
                finish, delta = None, ""
                if token is None:  # the producer stopped: cancelled
                    finish = "cancelled"
                else:
                    first_token_at = first_token_at or time.perf_counter()
                    completion.append(token)
                    self.counters.add_tokens(1)
                    if token in self.runner.end_ids:
                        finish = "stop"
                    else:
                        delta = stops.feed(detokenizer.push(token))
                        if stops.stopped:
                            finish = "stop"
                        elif len(completion) >= prepared.max_new_tokens:
                            finish = "length"
                    if finish and not stops.stopped:  # bytes of a character the answer ended inside
                        delta += stops.feed(detokenizer.flush())
                token_ids = [token] if token is not None else []
                logprobs = self._logprobs(sampler, token_ids)
                if held is not None:  # ready tokens not handed on yet go with this one
                    delta, token_ids = held.text + delta, held.token_ids + token_ids
                    logprobs = held.logprobs + logprobs if logprobs is not None else None
                    held = None
                if finish is None:
                    chunk = Chunk(delta, token_ids, adapter, logprobs=logprobs)
                    if together:
                        held = chunk
                    else:
                        yield chunk
                    continue
                last = self.last_chunk(
                    delta + stops.flush(),
                    token_ids,
                    adapter,
                    finish,
                    prepared.prompt_tokens,
                    len(completion),
                    started,
                    first_token_at,
                    prepared.cached_tokens,
                )
                last.logprobs = logprobs
                ended = True
                yield last
                return
        except GeneratorExit:  # the consumer closed the stream (Stop, a dropped client)
            if not ended:
                self.counters.finish("cancelled")
            raise
        finally:
            tokens.close()
