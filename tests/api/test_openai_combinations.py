"""Issue 28's chat-completion points through the official `openai` client on the shared real server:
nested tool parameters, tools with a response format (OpenAI's combinations), the roles and
message orders libraries send, public field names in errors, schema keywords pydantic writes, and
the wire details (content null, system_fingerprint). The tiny model's output is random: the tests
check what a grammar guarantees, never content."""

from __future__ import annotations

import enum
import json
from typing import Literal

import httpx
import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import API_KEY

HI = [{"role": "user", "content": "Where should the parcel go?"}]


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: Literal["Paris", "Oslo"]
    floor: int = Field(ge=0, le=9)  # bounded: a random model never ends a free number


class Ship(BaseModel):
    """Ship a parcel."""

    model_config = ConfigDict(extra="forbid")
    to: Address  # pydantic writes it as `$ref: #/$defs/Address`
    back: Address | None


SHIP = {"type": "function", "function": {"name": "ship", "parameters": Ship.model_json_schema()}}


class Colour(enum.Enum):
    red = "red"
    blue = "blue"


class Palette(BaseModel):
    picked: set[Literal["a", "b"]] = Field(max_length=2)  # uniqueItems
    counts: dict[Colour, bool]  # propertyNames: {$ref: Colour}


VERDICT = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}}


@pytest.fixture
def client(web_server):
    return openai.OpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def post(web_server, body: dict) -> httpx.Response:
    return httpx.post(
        web_server + "/v1/chat/completions", json=body, timeout=120, headers={"Authorization": f"Bearer {API_KEY}"}
    )


def test_a_forced_tool_with_nested_parameters_is_called_with_valid_arguments(web_server):
    body = {"model": "phi4mm", "messages": HI, "tools": [SHIP], "tool_choice": "required", "max_tokens": 200}
    response = post(web_server, {**body, "parallel_tool_calls": False})
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message["content"] is None  # present and null, as OpenAI sends it
    Ship.model_validate_json(message["tool_calls"][0]["function"]["arguments"])
    assert response.json()["system_fingerprint"] == "fp_phi4mm"


def test_a_forced_tool_with_a_format_calls_then_answers_in_the_format(client):
    forced = {"tools": [SHIP], "tool_choice": "required", "parallel_tool_calls": False, "response_format": FORMAT}
    first = client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=200, **forced)
    call = first.choices[0].message.tool_calls[0]
    Ship.model_validate_json(call.function.arguments)
    history = HI + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "shipped"},
    ]
    final = client.chat.completions.create(model="phi4mm", messages=history, max_tokens=20, **forced)
    assert final.choices[0].message.tool_calls is None
    assert set(json.loads(final.choices[0].message.content)) == {"ok"}


def test_tools_on_auto_with_a_format_give_a_call_or_the_format(client):
    kinds = set()
    for seed in range(4):
        answer = client.chat.completions.create(
            model="phi4mm",
            messages=HI,
            tools=[SHIP],
            parallel_tool_calls=False,
            response_format=FORMAT,
            max_tokens=200,
            temperature=1,
            seed=seed,
        ).choices[0]
        if answer.message.tool_calls:
            Ship.model_validate_json(answer.message.tool_calls[0].function.arguments)
            kinds.add("call")
        else:
            assert set(json.loads(answer.message.content)) == {"ok"}
            kinds.add("format")
    # each answer is one or the other (never free text), and both can come: with the tiny
    # checkpoint's weights these four seeds give both on CPU (before: never a call)
    assert kinds == {"call", "format"}


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "developer", "content": "Be brief."}, *HI],
        [*HI, {"role": "assistant", "content": "No."}, {"role": "system", "content": "Answer again."}],
        [*HI, {"role": "assistant", "content": "The parcel goes to"}],
    ],
    ids=["developer", "trailing system", "assistant prefill"],
)
def test_the_roles_and_orders_libraries_send_are_answered(client, messages):
    answer = client.chat.completions.create(model="phi4mm", messages=messages, max_tokens=3)
    assert answer.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(
    "field, value, param",
    [
        ("max_tokens", 0, "max_tokens"),
        ("max_completion_tokens", 0, "max_completion_tokens"),
        ("mm_processor_kwargs", {"dynamic_hd": 99}, "mm_processor_kwargs.dynamic_hd"),
        ("min_p", 1.5, "min_p"),
        ("stop_token_ids", [7], "stop_token_ids"),
    ],
)
def test_errors_name_the_public_field(web_server, field, value, param):
    response = post(web_server, {"model": "phi4mm", "messages": HI, field: value})
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert "max_new_tokens" not in response.text and "max_crops" not in response.text


def test_min_p_is_taken(client):
    answer = client.chat.completions.create(
        model="phi4mm", messages=HI, max_tokens=3, temperature=1, extra_body={"min_p": 0.2}
    )
    assert answer.choices[0].finish_reason in ("stop", "length")


def test_sets_and_enum_keyed_dicts_are_enforced_or_relaxed(client):
    schema = Palette.model_json_schema()
    assert "uniqueItems" in json.dumps(schema) and "propertyNames" in json.dumps(schema)
    answer = client.chat.completions.parse(model="phi4mm", messages=HI, response_format=Palette, max_tokens=60)
    palette = answer.choices[0].message.parsed
    assert palette.picked <= {"a", "b"} and set(palette.counts) <= set(Colour)
