"""The Responses API on the chat path: a Responses request (app/responses_schema.py) becomes a
chat completions request (app/chat_schema.py), so the model names, sampling, tools, grammars and
media decoding are app/chat_request.py's; the answer becomes output items; and answers kept for
`previous_response_id` live in a bounded store in memory."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import OrderedDict
from typing import NamedTuple

from app.chat_schema import ChatCompletionRequest, Choice
from app.responses_schema import (
    FunctionCallItem,
    FunctionCallOutputItem,
    IncompleteDetails,
    InputAudioPart,
    InputImage,
    InputText,
    InputTokensDetails,
    MessageItem,
    OutputMessage,
    OutputTextPart,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
)
from core.errors import InvalidRequest
from engine.request import Metrics

# chat fields an error may name -> the Responses API's own names (what the client sent)
PARAMS = {"messages": "input", "response_format": "text.format", "max_new_tokens": "max_output_tokens"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _part(part, where: str) -> dict:
    """A Responses content part -> a chat content part (as a dict, validated with the message)."""
    if isinstance(part, InputImage):
        if part.image_url is None:
            raise InvalidRequest("input_image needs `image_url` as a data: URI; there is no Files API here.", where)
        return {"type": "image_url", "image_url": {"url": part.image_url}}
    if isinstance(part, InputAudioPart):
        return {"type": "input_audio", "input_audio": part.input_audio.model_dump()}
    text = part.text if isinstance(part, (InputText, OutputTextPart)) else part.refusal
    return {"type": "text", "text": text}


def _content(content, where: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    return [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]


def input_messages(items: str | list) -> list[dict]:
    """Input items -> chat messages: the developer role is the system's; function calls in a row
    are one assistant turn with those tool calls; a call's output is a tool message; reasoning
    items are left out (this model has no reasoning to continue)."""
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            messages.append({"role": role, "content": _content(item.content, where)})
        elif isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "function": {"name": item.name, "arguments": item.arguments}}
            if messages and messages[-1]["role"] == "assistant" and messages[-1].get("tool_calls") is not None:
                messages[-1]["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output
            if not isinstance(output, str):  # a tool's result as parts: its text
                output = "".join(p["text"] for p in _content(output, where) if p["type"] == "text")
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return messages


def chat_request(body: ResponsesRequest, conversation: list[dict]) -> ChatCompletionRequest:
    """The chat request this Responses request means: `instructions` first, then `conversation`
    (the earlier one from previous_response_id, then the input's messages)."""
    system = [{"role": "system", "content": body.instructions}] if body.instructions else []
    fmt = body.text.format if body.text else None
    response_format = None
    if fmt is not None and fmt.type == "json_schema":
        if fmt.json_schema is None:
            raise InvalidRequest("text.format json_schema needs its `schema`.", param="text.format.schema")
        schema = {"name": fmt.name, "schema": fmt.json_schema, "strict": fmt.strict}
        response_format = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None:
        response_format = {"type": fmt.type}
    choice = body.tool_choice
    return ChatCompletionRequest.model_validate(
        {
            "messages": system + conversation,
            "model": body.model,
            "max_completion_tokens": body.max_output_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tools": [{"type": "function", "function": t.model_dump(exclude={"type"})} for t in body.tools or []]
            or None,
            "tool_choice": {"type": "function", "function": {"name": choice.name}}
            if choice is not None and not isinstance(choice, str)
            else choice,
            "parallel_tool_calls": body.parallel_tool_calls,
            "response_format": response_format,
        }
    )


def renamed(err: Exception) -> Exception:
    """An error about the chat request, naming the Responses API's field instead (any other
    error as it is)."""
    if isinstance(err, InvalidRequest) and err.param:
        err.param = PARAMS.get(err.param.split(".")[0].split("[")[0], err.param)
    return err


def output_items(answer: Choice) -> list:
    """A chat choice -> output items: each tool call a function_call item, or one message."""
    if answer.message.tool_calls:
        return [
            FunctionCallItem(
                id=new_id("fc"), call_id=c.id, name=c.function.name, arguments=c.function.arguments, status="completed"
            )
            for c in answer.message.tool_calls
        ]
    text = OutputTextPart(text=answer.message.content or "")
    return [OutputMessage(id=new_id("msg"), content=[text])]


def as_history(items: list) -> list[dict]:
    """Output items -> the chat message a later response continues from."""
    calls = [
        {"id": i.call_id, "function": {"name": i.name, "arguments": i.arguments}}
        for i in items
        if isinstance(i, FunctionCallItem)
    ]
    if calls:
        return [{"role": "assistant", "content": None, "tool_calls": calls}]
    return [{"role": "assistant", "content": "".join(p.text for i in items for p in i.content)}]


def finished(
    template: ResponseObject, answer: Choice, finish_reason: str | None, metrics: Metrics | None, items: list
) -> ResponseObject:
    """The response object once the answer is whole."""
    reason = {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish_reason or "")
    prompt = metrics.prompt_tokens if metrics else 0
    completion = metrics.completion_tokens if metrics else 0
    return template.model_copy(
        update={
            "status": "incomplete" if reason else "completed",
            "incomplete_details": IncompleteDetails(reason=reason) if reason else None,
            "output": items,
            "usage": ResponseUsage(
                input_tokens=prompt,
                output_tokens=completion,
                total_tokens=prompt + completion,
                input_tokens_details=InputTokensDetails(cached_tokens=metrics.cached_tokens if metrics else 0),
            ),
        }
    )


class Kept(NamedTuple):
    at: float  # time.monotonic() when kept
    size: int  # bytes of JSON, conversation and response together
    conversation: list[dict]
    response: dict | None  # the response object as sent (GET /v1/responses/{id})


class ResponseStore:
    """Responses kept for `previous_response_id` and `GET /v1/responses/{id}`: each response as
    sent and its whole conversation (without its instructions, which OpenAI does not carry over)
    as chat messages, the newest `count`, none older than `minutes`, together at most `max_bytes`
    (a message keeps its media as sent, base64, and each response holds its whole conversation,
    so a count alone does not bound memory)."""

    def __init__(self, count: int, minutes: float, max_bytes: int = 512 * 2**20):
        self.count, self.seconds, self.max_bytes = count, minutes * 60, max_bytes
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def keep(self, response_id: str, conversation: list[dict], response: dict | None = None) -> None:
        size = len(json.dumps(conversation)) + (len(json.dumps(response)) if response else 0)
        with self._lock:
            self._drop(response_id)
            self._kept[response_id] = Kept(time.monotonic(), size, conversation, response)
            self._bytes += size
            self._forget()

    def get(self, response_id: str) -> Kept | None:
        with self._lock:
            self._forget()
            return self._kept.get(response_id)

    def conversation(self, response_id: str) -> list[dict] | None:
        kept = self.get(response_id)
        return None if kept is None else list(kept.conversation)

    def delete(self, response_id: str) -> bool:
        """Forgets the response; False when it was not kept (or no longer)."""
        with self._lock:
            self._forget()
            return self._drop(response_id)

    def _drop(self, response_id: str) -> bool:
        kept = self._kept.pop(response_id, None)
        if kept is not None:
            self._bytes -= kept.size
        return kept is not None

    def _forget(self) -> None:
        oldest = time.monotonic() - self.seconds
        while self._kept and (
            len(self._kept) > self.count or self._bytes > self.max_bytes or next(iter(self._kept.values())).at < oldest
        ):
            self._bytes -= self._kept.popitem(last=False)[1].size
