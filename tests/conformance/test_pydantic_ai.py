"""pydantic-ai on chat completions: an agent with a tool and a nested output type, as a tool
(`ToolOutput`: a `final_result` tool beside the agent's own, tool_choice required) and as the
response format (`NativeOutput`: tools on auto with a json_schema format)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic_ai import Agent, NativeOutput, ToolOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.usage import UsageLimits

from tests.conformance.conftest import MODEL, TOKENS, Address, Parcel


@pytest.mark.parametrize("output", [ToolOutput, NativeOutput])
def test_an_agent_with_a_tool_and_a_nested_output(base_url, api_key, output):
    model = OpenAIChatModel(MODEL, provider=OpenAIProvider(base_url=base_url, api_key=api_key))
    settings = {"max_tokens": TOKENS, "parallel_tool_calls": False}
    agent = Agent(model, output_type=output(Parcel), retries=0, model_settings=settings)
    looked_up = []

    async def once(ctx, tool):  # offered until called: a random model would otherwise call it forever
        return None if looked_up else tool

    @agent.tool_plain(prepare=once)
    def address_of(name: Literal["home", "work"]) -> Address:
        """The address a name ships to."""
        looked_up.append(name)
        return Address(city="Oslo", floor=1)

    result = agent.run_sync("Ship my parcel.", usage_limits=UsageLimits(request_limit=4))
    assert isinstance(result.output, Parcel) and set(looked_up) <= {"home", "work"}
