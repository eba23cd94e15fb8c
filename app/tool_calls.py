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

from app.chat_schema import FunctionCall, NamedToolChoice, Tool, ToolCall
from core.errors import InvalidRequest
from engine.finite_schema import DATA_KEYWORDS
from engine.grammar import GrammarSpec
from engine.schema_relax import relaxed

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
    return GrammarSpec.lark(f"start: calls\n{_calls_rule(tools, parallel)}")


def call_or_answer(tools: list[Tool], answer: dict, parallel: bool = True) -> GrammarSpec:
    """Tools on "auto" with a response format: the answer is either such a call or JSON that
    matches `answer` (OpenAI's pair: the format shapes the text, never a call)."""
    text = json.dumps({**relaxed(answer), "x-guidance": {"whitespace_flexible": False}})
    return GrammarSpec.lark(f"start: calls | answer\n{_calls_rule(tools, parallel)}\nanswer: %json {text}")


def _calls_rule(tools: list[Tool], parallel: bool) -> str:
    """The Lark rule `calls`. Each tool's parameters sit whole under the schema's `$defs` with
    every `$ref` in them rewritten to point there, so `#/$defs/Addr` (pydantic's nested models)
    or `#` (recursion) still resolves once the parameters are no longer the document's root."""
    defs, calls = {}, []
    for i, t in enumerate(tools):
        defs[f"tool{i}"] = _rebased(relaxed(t.function.parameters or {"type": "object"}), f"#/$defs/tool{i}")
        calls.append(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "arguments"],
                "properties": {"name": {"const": t.function.name}, "arguments": {"$ref": f"#/$defs/tool{i}"}},
            }
        )
    schema = {
        "$defs": defs,
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": calls},
        "x-guidance": {"whitespace_flexible": False},
    }
    if not parallel:
        schema["maxItems"] = 1
    return f'calls: "{PREFIX}" %json {json.dumps(schema)}'


def _rebased(node, base: str):
    """`node` with each local `$ref` (`#…`) moved under `base`; JSON values (`enum`, `const`…) untouched."""
    if isinstance(node, list):
        return [_rebased(item, base) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in DATA_KEYWORDS else _rebased(v, base)) for k, v in node.items()}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = base + ref[1:]
    return out


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
