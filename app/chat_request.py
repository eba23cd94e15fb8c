"""An OpenAI chat request (app/chat_schema.py) -> what the conversation service runs (its
messages: app/chat_content.py), and its answers -> OpenAI's choices. The routes (app/api.py) only
move these over HTTP."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic_core import from_json

from app.api_errors import ModelNotFound, NotAJsonObject
from app.chat_schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    NamedToolChoice,
    PromptTokensDetails,
    TokenLogprob,
    Tool,
    TopLogprob,
    Usage,
)
from app.service import Reply
from app.tool_calls import call_or_answer, called_tools, forced_call, parse_calls, tool_list
from core.errors import InvalidRequest
from core.settings import Settings
from engine.grammar import GrammarSpec
from engine.request import Metrics, SamplingParams
from engine.request import TokenLogprob as EngineTokenLogprob


@dataclass
class ChatPlan:
    """What one request asks of the service."""

    params: list[SamplingParams]  # one per choice (`n`), each with its own seed when one is given
    tools: str | None  # the JSON tool list for the system turn; None: no tools offered
    adapter: str | None  # forced by the request's `model`; None: chosen by the conversation's media
    max_crops: int | None  # vLLM's mm_processor_kwargs.dynamic_hd; None: the server's budget
    # how the answer uses the tools and the format, as AnswerShape decided (for a remote engine)
    tool_choice: str = "auto"
    parallel_tool_calls: bool = True
    shaped_calls: bool = False  # a grammar spells any call out exactly: its arguments stream as written
    answer_schema: dict | None = None

    def options(self) -> dict:
        """What `ConversationService.chat` takes besides the messages and sampling."""
        return {
            "tools": self.tools,
            "adapter": self.adapter,
            "max_crops": self.max_crops,
            "tool_choice": self.tool_choice,
            "parallel_tool_calls": self.parallel_tool_calls,
            "answer_schema": self.answer_schema,
        }


def sampling(body: ChatCompletionRequest, settings: Settings) -> SamplingParams:
    """What the body sets (0 counts as set: it is refused, not replaced); the rest are the defaults."""
    given = {
        "max_new_tokens": next(
            (n for n in (body.max_completion_tokens, body.max_tokens) if n is not None), settings.max_new_tokens
        ),
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "min_p": body.min_p,
        "repetition_penalty": body.repetition_penalty,
        "presence_penalty": body.presence_penalty,
        "frequency_penalty": body.frequency_penalty,
        "seed": body.seed,
        "stop": (body.stop,) if isinstance(body.stop, str) else tuple(body.stop) if body.stop else None,
    }
    return SamplingParams(**{name: value for name, value in given.items() if value is not None})


def read_request(raw: bytes, model: type[BaseModel] = ChatCompletionRequest) -> ChatCompletionRequest:
    """The body -> the protocol model. pydantic's JSON parser stops at 200 levels of nesting, so a
    100,000-deep object is refused at once (400) instead of taking the stack json.loads needs; what
    is not a JSON object at all is refused as unreadable (422). `model`: the route's request model."""
    try:
        parsed = from_json(raw)
    except ValueError as err:
        if "recursion limit" in str(err) and raw.lstrip()[:1] == b"{":
            raise InvalidRequest("The JSON body is nested too deeply (over 200 levels).") from None
        parsed = None
    if not isinstance(parsed, dict):
        raise NotAJsonObject()
    return model.model_validate(parsed)


def model_names(settings: Settings, adapters: tuple[str, ...]) -> list[str]:
    """What a request may name as `model`: the served name, then each loaded LoRA adapter (naming
    one forces it), as vLLM lists a base model and its LoRAs."""
    return [settings.served_name(), *adapters]


def plan(body: ChatCompletionRequest, settings: Settings, adapters: tuple[str, ...]) -> ChatPlan:
    """Model name, sampling, grammar and tools, checked before anything is admitted or decoded.
    `adapters`: the engine's loaded ones."""
    adapter = None
    if body.model in adapters:
        adapter = body.model
    elif body.model not in (None, settings.served_name()):
        forced = f" (and {' and '.join(adapters)} to force an adapter)" if adapters else ""
        raise ModelNotFound(
            f"The model {body.model!r} does not exist here; this server serves {settings.served_name()!r}{forced}."
        )
    if body.stop_token_ids:
        raise InvalidRequest(
            "`stop_token_ids` is not supported here; `stop` takes the strings to end at.", param="stop_token_ids"
        )
    tools = tool_list(body.tools) if body.tools and body.tool_choice != "none" else None
    last = next((m.role for m in reversed(body.messages) if m.role not in ("system", "developer")), None)
    shape = answer_shape(
        body.tools if tools else None, body.tool_choice, body.parallel_tool_calls, body.response_format, last == "tool"
    )
    grammar = shape.grammar
    if grammar is not None:  # a bad schema is refused here, with a 400, not on the first token
        grammar.compiled(shape.source)
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("`top_logprobs` needs `logprobs: true`.", param="top_logprobs")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    params = dataclasses.replace(sampling(body, settings), grammar=grammar, logprobs=logprobs)
    _validate(params, "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens")
    if body.n > 1 and body.stream:
        raise InvalidRequest("`n` above 1 is served without `stream`.", param="n")
    seeds = [None if params.seed is None else params.seed + i for i in range(body.n)]
    max_crops = body.mm_processor_kwargs.dynamic_hd if body.mm_processor_kwargs else None
    if max_crops is not None and not 1 <= max_crops <= 64:
        raise InvalidRequest(
            f"`mm_processor_kwargs.dynamic_hd` must be a whole number from 1 to 64 (got {max_crops}).",
            param="mm_processor_kwargs.dynamic_hd",
        )
    return ChatPlan(
        [dataclasses.replace(params, seed=seed) for seed in seeds],
        tools,
        adapter,
        max_crops,
        shape.tool_choice,
        body.parallel_tool_calls is not False,
        shaped_calls=tools is not None and grammar is not None and grammar.kind == "lark",
        answer_schema=shape.schema,
    )


@dataclass(frozen=True)
class AnswerShape:
    """What this answer may be, decided once (`answer_shape`): the local engine reads `grammar`;
    a remote one (engine/remote.py) passes the same decision on as OpenAI's fields."""

    grammar: GrammarSpec | None  # the grammar the answer must match, or None
    source: str  # the field that brought it (a bad grammar's 400 names it)
    tool_choice: str  # "auto", "required", a function's name, or "none": no call (the tools have answered)
    schema: dict | None  # the JSON schema the answer's text follows (response_format), or None


def answer_shape(
    tools: list[Tool] | None, tool_choice, parallel_calls: bool | None, response_format, answered: bool = False
) -> AnswerShape:
    """Tools and `response_format` combined as OpenAI does:
    - a forced call (`tool_choice` "required" or named) is the whole answer; once the conversation
      ends with a tool's result (`answered`) and a `response_format` is given, the final answer
      follows the format instead (what a forced tool with an output type is for: openai-agents
      sends both on every turn);
    - tools on "auto" with a format: a call, or text that follows the format;
    - a format alone shapes the text.
    Shared by every route that takes tools (chat completions, responses)."""
    answer = _format_schema(response_format)
    named = tool_choice.function.name if isinstance(tool_choice, NamedToolChoice) else None
    forced = tools and (tool_choice == "required" or named)
    if forced and not (answer is not None and answered):
        # a named function is called once; "required" allows several unless parallel calls are off
        parallel = parallel_calls is not False and not named
        return AnswerShape(forced_call(called_tools(tools, tool_choice), parallel), "tools", named or "required", None)
    if tools and answer is not None and not forced:
        grammar = call_or_answer(tools, answer, parallel_calls is not False)
        return AnswerShape(grammar, "response_format", "auto", answer)
    grammar = None if answer is None else GrammarSpec.json_schema(answer)
    return AnswerShape(grammar, "response_format", "none" if forced else "auto", answer)


def _format_schema(response_format) -> dict | None:
    """The JSON schema `response_format` asks for, or None for free text."""
    if not response_format or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return {"type": "object"}
    if response_format.json_schema is None:
        raise InvalidRequest("response_format json_schema needs its `json_schema`.", param="response_format")
    return response_format.json_schema.json_schema


def _validate(params: SamplingParams, tokens_field: str) -> None:
    """SamplingParams.validate, its errors naming the request's own field for the answer's length."""
    try:
        params.validate()
    except InvalidRequest as err:
        if err.param != "max_new_tokens":
            raise
        raise InvalidRequest(str(err).replace("max_new_tokens", tokens_field), param=tokens_field) from None


def usage(metrics: list[Metrics | None]) -> Usage:
    """One prompt, however many choices; every choice's tokens. Its cached tokens: what every
    choice found kept (the first one prefilled may leave its prompt kept for the others)."""
    first = next((m for m in metrics if m), None)
    prompt = first.prompt_tokens if first else 0
    cached = min((m.cached_tokens for m in metrics if m), default=0)
    completion = sum(m.completion_tokens for m in metrics if m)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )


def openai_logprobs(entries: list[EngineTokenLogprob] | None) -> ChoiceLogprobs | None:
    def top(token: str, logprob: float) -> TopLogprob:
        return TopLogprob(token=token, logprob=logprob, bytes=list(token.encode()))

    if not entries:
        return None
    return ChoiceLogprobs(
        content=[
            TokenLogprob(**top(e.token, e.logprob).model_dump(), top_logprobs=[top(t, lp) for t, lp in e.top])
            for e in entries
        ]
    )


def completion_body(answer: ChatCompletion) -> dict:
    """The JSON body: fields that are None left out, except a tool-call message's `content: null`
    (OpenAI sends it, and some clients read the key)."""
    body = answer.model_dump(exclude_none=True)
    for dumped, parsed in zip(body["choices"], answer.choices):
        if parsed.message.tool_calls:
            dumped["message"]["content"] = None
    return body


def choice(index: int, text: str, final: Reply, tools: str | None) -> Choice:
    """An answer -> OpenAI's choice: a well-formed call is `tool_calls`; anything else is text."""
    calls = parse_calls(text) if tools and final.finish_reason == "stop" else None
    if calls:
        return Choice(index=index, message=AssistantMessage(content=None, tool_calls=calls), finish_reason="tool_calls")
    return Choice(
        index=index,
        message=AssistantMessage(content=text),
        finish_reason=final.finish_reason,
        logprobs=openai_logprobs(final.logprobs),
    )
