"""What a caller hands the engine (a conversation and sampling settings) and what it gets back."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from core.errors import InvalidRequest
from core.settings import DEFAULTS
from engine.grammar import GrammarSpec
from media.parts import MEDIA_PARTS, AudioPart, Message, TextPart

ROLES = ("system", "user", "assistant", "tool")  # tool: a tool's result (app/tool_calls.py)


@dataclass
class SamplingParams:
    """Decoding settings. The defaults reproduce the model's own generation config (greedy)."""

    max_new_tokens: int = DEFAULTS.max_new_tokens
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 means no top-k cut
    min_p: float = 0.0  # drop tokens under min_p x the likeliest one's probability; 0 means none
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0  # OpenAI's: -2 to 2, once per token that has appeared in the answer
    frequency_penalty: float = 0.0  # OpenAI's: -2 to 2, per appearance in the answer
    grammar: GrammarSpec | None = None  # the answer must match it (engine/grammar.py)
    logprobs: int | None = None  # None: none; 0: each chosen token's; k: also the k likeliest

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def validate(self) -> None:
        def bad(param: str, rule: str, value: Any) -> InvalidRequest:
            return InvalidRequest(f"`{param}` must be {rule} (got {value!r}).", param=param)

        def number(value: Any) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        if not isinstance(self.max_new_tokens, int) or isinstance(self.max_new_tokens, bool) or self.max_new_tokens < 1:
            raise bad("max_new_tokens", "a whole number of at least 1", self.max_new_tokens)
        if not number(self.temperature) or not 0.0 <= self.temperature <= 2.0:
            raise bad("temperature", "between 0 and 2", self.temperature)
        if not number(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", "greater than 0 and at most 1", self.top_p)
        if not isinstance(self.top_k, int) or isinstance(self.top_k, bool) or self.top_k < 0:
            raise bad("top_k", "a whole number of at least 0", self.top_k)
        if not number(self.min_p) or not 0.0 <= self.min_p <= 1.0:
            raise bad("min_p", "between 0 and 1", self.min_p)
        if not number(self.repetition_penalty) or not 0.0 < self.repetition_penalty <= 10.0:
            raise bad("repetition_penalty", "greater than 0 and at most 10", self.repetition_penalty)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63
        ):
            raise bad("seed", "a whole number from 0 to 2**63 - 1", self.seed)
        for name in ("presence_penalty", "frequency_penalty"):
            if not number(getattr(self, name)) or not -2.0 <= getattr(self, name) <= 2.0:
                raise bad(name, "between -2 and 2", getattr(self, name))
        if self.logprobs is not None and (not isinstance(self.logprobs, int) or not 0 <= self.logprobs <= 20):
            raise bad("top_logprobs", "a whole number from 0 to 20", self.logprobs)
        if len(self.stop) > 16 or not all(isinstance(s, str) and 0 < len(s) <= 256 for s in self.stop):
            raise bad("stop", "at most 16 non-empty strings of up to 256 characters", self.stop)


@dataclass
class GenerationRequest:
    messages: list[Message]
    params: SamplingParams = field(default_factory=SamplingParams)
    # Set from any thread to stop generation; the engine checks it before every decode step.
    cancel: threading.Event = field(default_factory=threading.Event)
    # Dynamic multi-crop budget per image; None means the engine's default.
    max_crops: int | None = None
    # Tools the model may call: the JSON list the system turn carries (app/tool_calls.py).
    tools: str | None = None
    # How the answer uses them and the format, for a remote engine to pass on as OpenAI's fields:
    # tool_choice "auto", "required", a function's name, or "none" (the tools have answered and the
    # format follows); parallel_tool_calls; the JSON schema the answer's text follows (its
    # response_format). The local engine needs none of them: the request's grammar holds the same
    # decision (app/chat_request.py `answer_shape`).
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True
    answer_schema: dict | None = None
    # The last message is the start of the assistant's answer: the answer continues it (a prefill).
    prefill: bool = False
    # The LoRA adapter to answer with; None: the router's choice from the conversation's media.
    adapter: str | None = None
    # Called from the engine's thread whenever a token (or the end) is ready for this request, with
    # True where nothing follows it (the answer's last token, the end, an error). With it, an engine
    # that `pushes` never makes its stream wait: the stream yields `PENDING` when nothing is ready,
    # and the caller asks again after a later call (app/sse_stream.py).
    on_token: Callable[[bool], None] | None = None

    def validate(self) -> None:
        if not self.messages:
            raise InvalidRequest("The conversation is empty: send at least one message.", param="messages")
        for i, message in enumerate(self.messages):
            if message.role not in ROLES:
                raise InvalidRequest(
                    f"Message {i} has role {message.role!r}; use one of {', '.join(ROLES)}.", param="messages"
                )
            for part in message.parts:
                if not isinstance(part, (TextPart, *MEDIA_PARTS)):
                    raise InvalidRequest(
                        f"Message {i} has an unsupported part {type(part).__name__}.", param="messages"
                    )
                if message.role != "user" and not isinstance(part, TextPart):
                    raise InvalidRequest(
                        f"Message {i}: only user messages may carry images or audio.", param="messages"
                    )
                if isinstance(part, AudioPart) and part.samples.size == 0:
                    raise InvalidRequest(f"Message {i} has an empty audio clip.", param="messages")
        if self.max_crops is not None and (not isinstance(self.max_crops, int) or not 1 <= self.max_crops <= 64):
            raise InvalidRequest(
                f"`max_crops` must be a whole number from 1 to 64 (got {self.max_crops!r}).", param="max_crops"
            )
        if self.prefill and self.messages[-1].role != "assistant":
            raise InvalidRequest("A prefill needs an assistant message last.", param="messages")
        if self.messages[-1].role not in ("user", "tool", "assistant"):
            raise InvalidRequest("The last message must come from the user, a tool or the assistant.", param="messages")
        self.params.validate()


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()  # what a stream with `on_token` yields while nothing is ready (never a Chunk)


@dataclass
class Metrics:
    """How one answer went, on its last chunk.

    Args:
        prompt_tokens: tokens of the rendered prompt, text plus every image and audio token.
        completion_tokens: tokens generated, the end token included.
        ttft_s: seconds from the request's arrival (media decoding included) to its first token.
        tokens_per_s: decode rate after the first token (0 when only one came).
        adapter: the LoRA adapter that answered: "base", "vision" or "speech".
        cached_tokens: prompt tokens whose keys and values were kept from an earlier request (a
            shared system turn, engine/prefix_cache.py), not computed again.
    """

    prompt_tokens: int
    completion_tokens: int
    ttft_s: float
    tokens_per_s: float
    adapter: str
    cached_tokens: int = 0


@dataclass
class TokenLogprob:
    """One generated token's log-probability under the distribution it was drawn from (after
    penalties, grammar and temperature), with the likeliest alternatives when asked for."""

    token: str  # the token's own text
    logprob: float
    top: list[tuple[str, float]]  # (token text, log-probability), likeliest first


@dataclass
class Chunk:
    """One streamed piece of an answer, as `Engine.stream` yields it (one per generated token on
    the local engine, or every token that was ready at once where its reader is told of tokens;
    as the remote server sends them on a remote one).

    Args:
        text: the new text: may be empty while a multi-byte character or a possible stop string
            is held back, and never contains an end token's text or a stop string.
        token_ids: the token(s) this chunk stands for (empty from a remote engine).
        adapter: the LoRA adapter answering: "base", "vision" or "speech".
        finish_reason: set on the last chunk only: "stop" (an end token or a stop string),
            "length" (max_new_tokens, or the context window) or "cancelled".
        metrics: set on the last chunk only.
        logprobs: with `SamplingParams.logprobs`, one entry per token in `token_ids`.
    """

    text: str
    token_ids: list[int]
    adapter: str
    finish_reason: str | None = None
    metrics: Metrics | None = None
    logprobs: list[TokenLogprob] | None = None
