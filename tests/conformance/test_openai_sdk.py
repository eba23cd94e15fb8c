"""The official `openai` client's structured helpers: `parse` with a pydantic function tool (strict,
nested) and streamed tool-call arguments read by its own accumulator."""

from __future__ import annotations

import openai
import pytest

from tests.conformance.conftest import MODEL, TOKENS, Parcel

ASK = [{"role": "user", "content": "Ship my parcel."}]


@pytest.fixture
def client(base_url, api_key):
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)


def test_parse_with_a_pydantic_function_tool(client):
    tool = openai.pydantic_function_tool(Parcel, name="ship")
    answer = client.chat.completions.parse(
        model=MODEL, messages=ASK, tools=[tool], tool_choice="required", parallel_tool_calls=False, max_tokens=TOKENS
    )
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == "ship" and isinstance(call.function.parsed_arguments, Parcel)


def test_streamed_tool_arguments_arrive_in_pieces(client):
    tool = openai.pydantic_function_tool(Parcel, name="ship")
    with client.chat.completions.stream(
        model=MODEL, messages=ASK, tools=[tool], tool_choice="required", parallel_tool_calls=False, max_tokens=TOKENS
    ) as stream:
        pieces = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(pieces) > 1
    assert isinstance(final.choices[0].message.tool_calls[0].function.parsed_arguments, Parcel)
