"""litellm's OpenAI-compatible route: plain, streamed, a forced tool and a json_schema format."""

from __future__ import annotations

import json

import litellm
import pytest

from tests.conformance.conftest import MODEL, TOKENS, Parcel

ASK = [{"role": "user", "content": "Ship my parcel."}]
SHIP = {"type": "function", "function": {"name": "ship", "parameters": Parcel.model_json_schema()}}


@pytest.fixture
def call(base_url, api_key):
    def completion(**kwargs):
        return litellm.completion(model=f"openai/{MODEL}", api_base=base_url, api_key=api_key, messages=ASK, **kwargs)

    return completion


def test_plain_and_streamed(call):
    assert call(max_tokens=3).choices[0].finish_reason in ("stop", "length")
    chunks = list(call(max_tokens=3, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_forced_tool(call):
    answer = call(tools=[SHIP], tool_choice="required", parallel_tool_calls=False, max_tokens=TOKENS)
    Parcel.model_validate_json(answer.choices[0].message.tool_calls[0].function.arguments)


def test_a_json_schema_format(call):
    answer = call(response_format=Parcel, max_tokens=TOKENS)
    Parcel.model_validate(json.loads(answer.choices[0].message.content))
