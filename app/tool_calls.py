"""Function calling in Phi-4-mini's own format (this model's decoder with no LoRA active).

- The tool list goes in the system turn inside `<|tool|>…<|/tool|>` as a JSON list of
  {"name", "description", "parameters"} (the model card; engine/engine.py places it).
- The model calls tools by answering `functools[{"name": …, "arguments": {…}}, …]`, the form
  vLLM's `phi4_mini_json` parser and sglang's Phi-4-mini detector read.
- An earlier call goes back into the conversation in that same form; a tool's result is a
  `tool` turn, rendered `<|tool|>result<|end|>` by the chat template's generic branch (a guess:
  the model card shows no tool-result turn, and that is what the released template makes of
  the role).
- `tool_choice` "required" or a named function is enforced by a grammar (engine/grammar.py):
  the answer can only be such a call, with arguments that match the tool's schema.
"""

from __future__ import annotations

import json
import uuid

from app.protocol import FunctionCall, NamedToolChoice, Tool, ToolCall
from core.errors import InvalidRequest
from engine.grammar import GrammarSpec

PREFIX = "functools"


def tool_list(tools: list[Tool]) -> str:
    """The tools as the model was trained to read them (the system turn's `<|tool|>` block)."""
    return json.dumps(
        [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in tools
        ]
    )


def called_tools(tools: list[Tool], choice) -> list[Tool]:
    """The tools `choice` allows the model to call (a named one must exist)."""
    if isinstance(choice, NamedToolChoice):
        named = [t for t in tools if t.function.name == choice.function.name]
        if not named:
            raise InvalidRequest(
                f"tool_choice names {choice.function.name!r}, which is not among the tools.", param="tool_choice"
            )
        return named
    return tools


def forced_call(tools: list[Tool], parallel: bool = True) -> GrammarSpec:
    """A grammar whose only sentences are `functools[…]` with one call of `tools` (or, when
    `parallel`, one or more), each with arguments that match its schema."""
    calls = [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "arguments"],
            "properties": {
                "name": {"const": t.function.name},
                "arguments": t.function.parameters or {"type": "object"},
            },
        }
        for t in tools
    ]
    schema = {"type": "array", "minItems": 1, "items": {"anyOf": calls}, "x-guidance": {"whitespace_flexible": False}}
    if not parallel:
        schema["maxItems"] = 1
    return GrammarSpec.lark(f'start: "{PREFIX}" calls\ncalls: %json {json.dumps(schema)}')


def as_text(calls: list[ToolCall]) -> str:
    """An assistant's earlier calls, as the model itself writes them."""
    return PREFIX + json.dumps(
        [{"name": c.function.name, "arguments": _arguments(c.function.arguments)} for c in calls]
    )


def _arguments(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text  # what the client sent; the model sees it as it was


def could_be_call(text: str) -> bool:
    """Whether an answer that begins with `text` may still turn out to be a call."""
    head = text.lstrip()
    return head.startswith(PREFIX) or PREFIX.startswith(head)


def parse_calls(text: str) -> list[ToolCall] | None:
    """The model's calls, or None when the answer is not a well-formed call (then it is text)."""
    head = text.strip()
    if not head.startswith(PREFIX):
        return None
    try:
        raw = json.loads(head[len(PREFIX) :])
    except ValueError:
        return None
    raw = raw if isinstance(raw, list) else [raw]
    calls = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            return None
        arguments = item.get("arguments", item.get("parameters", {}))
        calls.append(
            ToolCall(
                id=f"call_{uuid.uuid4().hex[:24]}",
                function=FunctionCall(name=item["name"], arguments=json.dumps(arguments)),
            )
        )
    return calls or None
