"""instructor: a nested model through TOOLS and TOOLS_STRICT (a named forced tool) and JSON_SCHEMA
(response_format), and partial objects streamed from tool-call argument pieces."""

from __future__ import annotations

import instructor
import openai
import pytest

from tests.conformance.conftest import MODEL, TOKENS, Parcel

ASK = [{"role": "user", "content": "Describe the parcel."}]


@pytest.fixture
def openai_client(base_url, api_key):
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.TOOLS_STRICT, instructor.Mode.JSON_SCHEMA])
def test_a_nested_model(openai_client, mode):
    client = instructor.from_openai(openai_client, mode=mode)
    parcel = client.chat.completions.create(
        model=MODEL, messages=ASK, response_model=Parcel, max_tokens=TOKENS, max_retries=0
    )
    assert isinstance(parcel, Parcel)


def test_partial_streaming_sees_the_object_grow(openai_client):
    client = instructor.from_openai(openai_client, mode=instructor.Mode.TOOLS)
    partials = list(
        client.chat.completions.create_partial(
            model=MODEL, messages=ASK, response_model=Parcel, max_tokens=TOKENS, max_retries=0
        )
    )
    assert len(partials) > 1 and Parcel.model_validate(partials[-1].model_dump())
