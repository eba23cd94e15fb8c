"""langchain-openai's ChatOpenAI: `bind_tools` with a forced tool, and `with_structured_output`
both ways (json_schema, its default, and function calling)."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI

from tests.conformance.conftest import MODEL, TOKENS, Parcel

ASK = "Ship my parcel."


@pytest.fixture
def chat(base_url, api_key):
    return ChatOpenAI(model=MODEL, base_url=base_url, api_key=api_key, max_tokens=TOKENS, max_retries=0)


def test_bind_tools_with_a_forced_tool(chat):
    message = chat.bind_tools([Parcel], tool_choice="Parcel", parallel_tool_calls=False).invoke(ASK)
    assert message.tool_calls[0]["name"] == "Parcel"
    Parcel.model_validate(message.tool_calls[0]["args"])


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_with_structured_output(chat, method):
    assert isinstance(chat.with_structured_output(Parcel, method=method).invoke(ASK), Parcel)
