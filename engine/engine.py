"""The engine: one hosted model, the LoRA router, and streaming generation with cancellation. A
facade over its parts: prompt preparation (engine/prompt_prep.py), the one decode loop
(engine/scheduler.py, over the caches of engine/row_caches.py), output processing
(engine/output.py), and the fast path's start-up (engine/fast_start.py, engine/self_check.py)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterator

import torch

from core.errors import ShuttingDown, first_line, release_memory
from core.settings import DEFAULTS
from engine.chat_engine import ChatEngine
from engine.control_tokens import ControlTokens
from engine.counters import EngineCounters
from engine.decode import ModelRunner, PreparedPrompt
from engine.fast_start import start_decoder
from engine.grammar import GrammarTokenizer
from engine.loading import LoadOptions, load_model
from engine.model_family import PHI4, Phi4Family
from engine.output import OutputProcessing
from engine.output_head import columns_for_batches, hold_standard_strides
from engine.prompt_prep import PromptPreparation
from engine.request import Chunk, GenerationRequest, SamplingParams
from engine.router import LoraRouter
from engine.sampling import Sampler
from engine.scheduler import Scheduler
from engine.self_check import check_fast_path
from engine.static_decode import resolve_mode
from engine.toolchain import compile_problem
from media.audio_features import install_fast_features
from media.limits import MediaLimits
from media.parts import Message, TextPart

log = logging.getLogger(__name__)


class Engine(PromptPreparation, OutputProcessing, ChatEngine):
    def __init__(
        self,
        model,
        processor,
        device: torch.device,
        context_window: int | None = None,
        limits: MediaLimits = MediaLimits(),
        family: Phi4Family = PHI4,
    ):
        self.model = model
        self.family = family  # engine/model_family.py: what is the model's own
        self.processor = processor
        self.limits = limits
        install_fast_features(processor)
        family.prepare(model)
        self.tokenizer = processor.tokenizer
        # transformers saves processor and tokenizer templates to one file, so either may hold it; a
        # checkpoint with neither is rendered with the family's own template
        self.chat_template = processor.chat_template or self.tokenizer.chat_template or family.chat_template
        self.controls = ControlTokens(self.tokenizer)  # every added token: none may come from user text
        self.device = device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        config = model.config
        self.context_window = context_window or config.max_position_embeddings
        self.router = LoraRouter(model, tuple(getattr(model, "peft_config", {})))
        head = family.output_head(model)
        self.strides_hook = hold_standard_strides(head)  # before any compile: graphs guard on hooks
        if device.type == "cpu":
            columns_for_batches(head)
        end_ids = {self.tokenizer.convert_tokens_to_ids(t) for t in family.end_tokens}
        eos = model.generation_config.eos_token_id
        end_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        # The model must never emit media placeholders: the next step would try to fill them.
        self.media_token_ids = family.media_token_ids(config)
        switch = family.longrope_switch(config)
        self.runner = ModelRunner(model, self.router, end_ids, switch)  # engine/decode.py: the decode contract
        self.grammar_tokenizer = GrammarTokenizer(self.tokenizer, config.vocab_size)  # built on first use
        self.static = None  # a SlotDecoder once set_decode picks the static or compiled path
        self.scheduler = Scheduler(self, 1)  # the one decode loop; enable_batching sizes it
        self.counters = EngineCounters()  # finish reasons and tokens generated, for /health and /metrics
        self.closing = False  # set by close(): new requests are refused, open ones end
        self.decode_mode = "dynamic"  # the decode path serving requests (set_decode)
        self.decode_fallback: str | None = None  # why a chosen fast path is not serving, if it is not
        self.self_check_s = 0.0  # seconds the fast path's start-up self-check took (after compiling)

    def enable_batching(
        self, max_batch: int, prefill_chunk: int = 512, prefixes: int | None = DEFAULTS.prefix_cache_tokens
    ) -> None:
        """Decode up to `max_batch` concurrent requests together (1: one at a time); prompts go in
        by chunks of `prefill_chunk` tokens while others decode (engine/scheduler.py), after the
        shared beginning kept for them, if any (`prefixes` tokens kept at most: engine/prefix_cache.py)."""
        self.scheduler.close()
        self.scheduler = Scheduler(self, max_batch, prefill_chunk, prefixes)

    def set_decode(
        self,
        mode: str = "auto",
        static_tokens: int = 4096,
        static_rows: int | None = None,
        compile_cache: str | None = None,
    ) -> str:
        """Chooses the decode path (engine/static_decode.py) -> the resolved mode. Each row of the
        slot cache holds `static_tokens`, at most up to the long-RoPE switch; `static_rows` rows
        (None: engine/fast_start.py sizes it). Compiled graphs are kept in `compile_cache`."""
        mode = resolve_mode(mode, self.model, self.device)
        self.static, self.decode_mode, self.decode_fallback, self.self_check_s = None, "dynamic", None, 0.0
        if mode == "dynamic":
            return mode
        if mode == "compiled" and (problem := compile_problem(self.device)):
            log.warning("the compiled decode path cannot run here (%s); decoding dynamically instead", problem)
            self.decode_fallback = f"compiled: {problem}"
            return "dynamic"
        capacity = min(static_tokens, self.runner.longrope_switch_at or static_tokens, self.context_window)
        try:
            self.static = start_decoder(self, mode, capacity, static_rows, compile_cache)
            started = time.perf_counter()
            problem = check_fast_path(self)
            self.self_check_s = time.perf_counter() - started
            if self.static.uncompiled:
                problem = f"torch.compile failed for the {' and '.join(sorted(set(self.static.uncompiled)))} step"
        except Exception as err:  # noqa: BLE001 - compile, graph capture, out of memory: serve dynamically
            release_memory(err)
            problem = f"{type(err).__name__}: {first_line(err)}"
        if problem:
            log.warning(
                "the %s decode path failed its start-up self-check (%s); decoding dynamically instead", mode, problem
            )
            self.static, self.decode_fallback = None, f"{mode}: {problem}"
            return "dynamic"
        self.decode_mode = mode
        return mode

    def canary_prompt(self, text: str, adapter: str) -> PreparedPrompt:
        """A text prompt prepared to run under `adapter` (the start-up self-check's canary)."""
        request = GenerationRequest([Message("user", [TextPart(text)])], SamplingParams(max_new_tokens=8))
        return dataclasses.replace(self.prepare(request), adapter=adapter)

    def close(self) -> None:
        """Graceful stop: refuse new requests and end the open ones with a clear error. Never
        blocks (it runs in a signal handler); the decode loop ends between two steps."""
        self.closing = True
        self.scheduler.close(wait=False)

    @property
    def pushes(self) -> bool:
        """Whether a request's `on_token` is honoured: the scheduler decodes on a thread of its own
        (one at a time, the consumer's own thread runs the loop)."""
        return self.scheduler.threaded

    @property
    def concurrency(self) -> int:
        """Requests worth having in flight at once: what the scheduler decodes together."""
        return self.scheduler.max_batch

    @property
    def adapters(self) -> tuple[str, ...]:
        return self.router.adapters

    @classmethod
    def load(
        cls, options: LoadOptions, context_window: int | None = None, limits: MediaLimits = MediaLimits()
    ) -> "Engine":
        model, processor, device = load_model(options)
        return cls(model, processor, device, context_window, limits)

    # -- generating --------------------------------------------------------------------------

    def stream(self, request: GenerationRequest) -> Iterator[Chunk]:
        """The chunks of the answer. Everything that can refuse the request (validation, media,
        limits, forged control tokens, the grammar) runs here, on the call, so a server can answer
        with an error status before it starts a stream; decoding starts on the first `next`."""
        started = time.perf_counter()
        self._check_open()
        prepared = self.prepare(request)
        sampler = self.sampler(request, prepared)
        return self._decoded(request, prepared, sampler, started)

    def _decoded(self, request: GenerationRequest, prepared: PreparedPrompt, sampler: Sampler, started: float):
        tokens = self.scheduler.submit(request, prepared, sampler)
        yield from self._chunks(request, prepared, tokens, started, sampler)

    def sampler(self, request: GenerationRequest, prepared: PreparedPrompt) -> Sampler:
        return Sampler.for_params(
            request.params, self.device, self.media_token_ids, prepared.prompt_tokens, self.grammar_tokenizer
        )

    def _check_open(self) -> None:
        if self.closing:
            raise ShuttingDown()
