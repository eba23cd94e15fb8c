"""The engine: one hosted model, the LoRA router, and streaming generation with cancellation."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from typing import Callable, Iterator

import torch

from core.errors import InvalidRequest, PromptTooLong, ShuttingDown, first_line, generation_failed, release_memory
from engine.audio_clips import encode_each_clip_alone
from engine.control_tokens import ControlTokens
from engine.counters import EngineCounters
from engine.decode import ModelRunner, PreparedPrompt
from engine.fast_start import start_decoder
from engine.grammar import GrammarTokenizer
from engine.loading import LoadOptions, load_model
from engine.model_config import END_TOKENS
from engine.protocol import ChatEngine
from engine.request import PENDING, Chunk, GenerationRequest, SamplingParams, TokenLogprob
from engine.router import LoraRouter, choose_adapter
from engine.sampling import Sampler
from engine.self_check import check_fast_path
from engine.static_decode import StaticRun, resolve_mode
from engine.text_stream import IncrementalDetokenizer, StopMatcher
from engine.toolchain import compile_problem
from media.audio_features import install_fast_features
from media.limits import SAMPLE_RATE, MediaLimits
from media.parts import Message, TextPart, prompt_items
from prompts import chat_format

log = logging.getLogger(__name__)


def joined_items(parts) -> Iterator[tuple[str, object]]:
    """`prompt_items` with adjacent texts joined into one: the template concatenates them anyway,
    and a control token split across parts (`"<|en"`, `"d|>"`) must be seen whole to be neutralised."""
    texts = []
    for kind, item in prompt_items(parts):
        if kind == "text":
            texts.append(item)
            continue
        if texts:
            yield "text", "".join(texts)
            texts = []
        yield kind, item
    if texts:
        yield "text", "".join(texts)


def to_chat(messages: list[Message], tools: str | None, text_of: Callable[[str], str]) -> tuple[list[dict], list, list]:
    """Typed messages -> (template input with placeholders in order, images, audio clips). Every
    text that is not ours passes through `text_of`: the engine's neutraliser for the prompt, or
    one that empties it for the prompt's skeleton (engine/control_tokens.py). The tool list closes
    the first system turn inside `<|tool|>…<|/tool|>` (Phi-4-mini's model card), after its text;
    the tags are ours, the list's own text is not."""
    chat, media = [], {"image": [], "audio": []}
    for message in messages:
        content = []
        for kind, item in joined_items(message.parts):
            if kind == "text":
                content.append({"type": "text", "text": text_of(item)})
            else:
                content.append({"type": kind})
                media[kind].append(item)
        if tools and message.role == "system":
            content.append({"type": "text", "text": f"<|tool|>{text_of(tools)}<|/tool|>"})
            tools = None
        chat.append({"role": message.role, "content": content})
    return chat, media["image"], media["audio"]


def _left_out(text: str) -> str:
    return ""


def _standard_strides(module, args):
    """transformers hands the output head the prompt's last position as a view with the whole
    prompt's strides; PyTorch's matmul cannot fold such a tensor into a matrix, so it runs a batched
    product, which in bf16 on a CPU first copies the whole transposed head (200,064 x 3,072): 3.2 s
    of every prefill on this CPU at full size. The same rows with standard strides take 0.04 s
    (bench/RESULTS.md); what the batched product costs on a GPU is not measured. `generate` gets
    this too: it runs the same model."""
    hidden = args[0]
    return (hidden.reshape(-1, hidden.shape[-1]).view(hidden.shape), *args[1:])


def hold_standard_strides(model):
    """Installs `_standard_strides` on the model's output head, once per model -> its handle."""
    handle = getattr(model.lm_head, "phi4mm_strides_hook", None)
    if handle is None:
        handle = model.lm_head.phi4mm_strides_hook = model.lm_head.register_forward_pre_hook(_standard_strides)
    return handle


class Engine(ChatEngine):
    def __init__(
        self,
        model,
        processor,
        device: torch.device,
        context_window: int | None = None,
        limits: MediaLimits = MediaLimits(),
    ):
        self.model = model
        self.processor = processor
        self.limits = limits
        install_fast_features(processor)
        encode_each_clip_alone(model)  # engine/audio_clips.py: transformers fails on 2 clips over 40 s
        self.tokenizer = processor.tokenizer
        # transformers saves processor and tokenizer templates to one file, so either may hold it; a
        # checkpoint with neither is rendered by the template's pure-Python twin (prompts/chat_format.py)
        self.chat_template = processor.chat_template or self.tokenizer.chat_template
        self.controls = ControlTokens(self.tokenizer)  # every added token: none may come from user text
        self.device = device
        self.dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        config = model.config
        self.context_window = context_window or config.max_position_embeddings
        self.router = LoraRouter(model, tuple(getattr(model, "peft_config", {})))
        self.strides_hook = hold_standard_strides(model)  # before any compile: graphs guard on hooks
        end_ids = {self.tokenizer.convert_tokens_to_ids(t) for t in END_TOKENS}
        eos = model.generation_config.eos_token_id
        end_ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        # The model must never emit media placeholders: the next step would try to fill them.
        self.media_token_ids = [config.vision_config.image_token_id, config.audio_config.audio_token_id]
        rope = config.rope_parameters or {}
        switch = config.original_max_position_embeddings if rope.get("rope_type") == "longrope" else None
        self.runner = ModelRunner(model, self.router, end_ids, switch)  # engine/decode.py: the decode contract
        self.grammar_tokenizer = GrammarTokenizer(self.tokenizer, config.vocab_size)  # built on first use
        # The static cache serves one request at a time; a second one meanwhile decodes dynamically.
        self._static_owner = threading.Lock()
        self.batcher = None  # a DecodeBatcher once enable_batching is called
        self.static = None  # a SlotDecoder once set_decode picks the static or compiled path
        self.counters = EngineCounters()  # finish reasons and tokens generated, for /health and /metrics
        self.closing = False  # set by close(): new requests are refused, open ones end
        self.decode_mode = "dynamic"  # the decode path serving requests (set_decode)
        self.decode_fallback: str | None = None  # why a chosen fast path is not serving, if it is not
        self.self_check_s = 0.0  # seconds the fast path's start-up self-check took (after compiling)

    def enable_batching(self, max_batch: int) -> None:
        """Decode up to `max_batch` concurrent requests together (1: one at a time)."""
        from engine.batching import DecodeBatcher

        self.batcher = DecodeBatcher(self, max_batch) if max_batch > 1 else None

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
        if self.batcher is not None:
            self.batcher.close(wait=False)

    def static_fits(self, prepared: PreparedPrompt) -> bool:
        return self.static is not None and self.static.fits(prepared.prompt_tokens, prepared.max_new_tokens)

    @property
    def pushes(self) -> bool:
        """Whether a request's `on_token` is honoured: only the batcher's thread decodes apart from
        the consumer (a lone request without it decodes in the consumer's own thread)."""
        return self.batcher is not None

    @property
    def concurrency(self) -> int:
        """Requests worth having in flight at once: what the batcher decodes together."""
        return self.batcher.max_batch if self.batcher else 1

    @property
    def adapters(self) -> tuple[str, ...]:
        return self.router.adapters

    @classmethod
    def load(
        cls, options: LoadOptions, context_window: int | None = None, limits: MediaLimits = MediaLimits()
    ) -> "Engine":
        model, processor, device = load_model(options)
        return cls(model, processor, device, context_window, limits)

    # -- preparing ---------------------------------------------------------------------------

    def render(self, chat: list[dict], prefill: bool = False) -> str:
        """The prompt; with `prefill` the last (assistant) message is left open for the answer to continue."""
        if self.chat_template:
            return self.processor.apply_chat_template(
                chat,
                chat_template=self.chat_template,
                tokenize=False,
                add_generation_prompt=not prefill,
                continue_final_message=prefill,
            )
        return chat_format.render(chat, continue_final_message=prefill)

    def prepare(self, request: GenerationRequest) -> PreparedPrompt:
        request.validate()
        chat, images, audios = to_chat(request.messages, request.tools, self.controls.neutralise)
        # the same chat with no user text: what the template alone places (a few dozen tokens)
        skeleton = self.render(to_chat(request.messages, request.tools, _left_out)[0], request.prefill)
        prompt = self.render(chat, request.prefill)
        kwargs = {"images": images, "dynamic_hd": request.max_crops or self.limits.max_crops} if images else {}
        if audios:
            kwargs.update(audio=audios, sampling_rate=SAMPLE_RATE)
        # Within the model's reach, an answer is clipped to the room the prompt leaves (below); past
        # it, the number is a mistake, and clipping it would quietly run the longest answer there is
        if request.params.max_new_tokens > self.model.config.max_position_embeddings:
            raise InvalidRequest(
                f"`max_tokens` is {request.params.max_new_tokens}; this model's whole context "
                f"window is {self.model.config.max_position_embeddings} tokens.",
                param="max_tokens",
            )
        self.controls.check_text(prompt, skeleton)
        inputs = self.processor(text=prompt, return_tensors="pt", return_text_replacement_offsets=True, **kwargs)
        self.controls.check_ids(
            inputs["input_ids"], self.tokenizer(skeleton, return_tensors="pt")["input_ids"], self._expanded(inputs)
        )
        prompt_tokens = int(inputs["input_ids"].shape[1])
        media_tokens = int(torch.isin(inputs["input_ids"], torch.tensor(self.media_token_ids)).sum())
        if media_tokens > self.limits.max_media_tokens:
            raise PromptTooLong(
                f"The images and audio of this conversation come to {media_tokens} tokens; this server takes "
                f"up to {self.limits.max_media_tokens} per request. Send fewer or smaller photos, a lower crop "
                "budget, or shorter audio.",
                param="messages",
            )
        if prompt_tokens >= self.context_window:
            raise PromptTooLong(
                f"The prompt is {prompt_tokens} tokens long (text plus image and audio tokens), but the "
                f"context window holds {self.context_window}. Shorten the conversation or send less media.",
                param="messages",
            )
        inputs = inputs.to(device=self.device, dtype=self.dtype)  # casts only the float tensors
        inputs.pop("num_img_tokens", None)
        return PreparedPrompt(
            inputs=dict(inputs),
            adapter=request.adapter or choose_adapter(request.messages),
            prompt_tokens=prompt_tokens,
            max_new_tokens=min(request.params.max_new_tokens, self.context_window - prompt_tokens),
        )

    def _expanded(self, inputs) -> Counter:
        """How many tokens the processor put in place of the media placeholders, by placeholder
        (and takes that bookkeeping out of the model's inputs)."""
        expanded = Counter({self.processor.image_token: 0, self.processor.audio_token: 0})
        for replaced in inputs.pop("text_replacement_offsets")[0]:
            expanded[replaced["text"]] += replaced["replacement"].count(replaced["text"])
        return expanded

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

    def _decoded(
        self, request: GenerationRequest, prepared: PreparedPrompt, sampler: Sampler, started: float
    ) -> Iterator[Chunk]:
        if self.batcher:
            tokens = self.batcher.submit(request, prepared, sampler)
        else:
            tokens = self.decode_alone(request, prepared, sampler)
        yield from self._chunks(request, prepared, tokens, started, sampler)

    def sampler(self, request: GenerationRequest, prepared: PreparedPrompt) -> Sampler:
        return Sampler.for_params(
            request.params, self.device, self.media_token_ids, prepared.prompt_tokens, self.grammar_tokenizer
        )

    def decode_alone(
        self, request: GenerationRequest, prepared: PreparedPrompt, sampler: Sampler | None = None
    ) -> Iterator[int]:
        """Token ids of one request decoded on its own (no batcher), until cancelled or the
        consumer stops asking: engine/decode.py's loop. The model is taken per step
        (`runner.turn`), so concurrent requests interleave; a request that fits the static cache
        (and finds it free) steps there instead."""
        runner, sampler, adapters = self.runner, sampler or self.sampler(request, prepared), [prepared.adapter]
        static = self.static_fits(prepared) and self._static_owner.acquire(blocking=False)
        try:
            if static:
                with runner.turn(None):  # the slot decoder applies the adapter itself
                    run = StaticRun.start(self.static, prepared, sampler)
            ids, cache = prepared.input_ids, runner.new_cache()
            while not request.cancel.is_set():
                self._check_open()
                with runner.turn(None if static else adapters):
                    if static:
                        token = run.advance()  # reads back the token before last: the device stays a step ahead
                    else:
                        logits, cache = runner.forward(prepared, ids, cache)
                        ids = torch.cat([ids, sampler.choose(ids, logits)[:, None]], dim=1)
                yield token if static else int(ids[0, -1])
        except Exception as err:
            release_memory(err)
            raise
        finally:
            if static:
                self._static_owner.release()

    def _logprobs(self, sampler: Sampler, token_ids: list[int]) -> list[TokenLogprob] | None:
        """The sampler's record of these tokens, with their text, when the request asked for it."""
        if sampler.logprobs is None:
            return None
        entries = [sampler.chosen.popleft() for _ in token_ids]

        def text(token: int) -> str:
            return self.tokenizer.decode([token])

        return [TokenLogprob(text(t), lp, [(text(i), v) for i, v in top]) for t, lp, top in entries]

    def _check_open(self) -> None:
        if self.closing:
            raise ShuttingDown()

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
                    raise generation_failed(err) from None
                if token is PENDING:  # nothing ready yet (GenerationRequest.on_token)
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
                if finish is None:
                    yield Chunk(delta, token_ids, adapter, logprobs=logprobs)
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
