"""openai-agents on chat completions: an agent with a tool and an output type, the tool forced
(`tool_choice` required) so that the tiny model calls it; the agent sends `response_format` with
the forced tool on every turn, and once the tool has answered the final output follows it."""

from __future__ import annotations

import openai
from agents import Agent, ModelSettings, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

from tests.conformance.conftest import MODEL, TOKENS, Address, Parcel


def test_an_agent_with_a_tool_and_an_output_type(base_url, api_key):
    set_tracing_disabled(True)
    calls = []

    @function_tool
    def lookup(address: Address) -> str:
        """Check an address (nested arguments: a `$ref` in the tool's schema)."""
        calls.append(address)
        return "ok"

    client = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
    agent = Agent(
        name="shipper",
        instructions="Ship the parcel.",
        model=OpenAIChatCompletionsModel(MODEL, openai_client=client),
        model_settings=ModelSettings(tool_choice="required", max_tokens=TOKENS, parallel_tool_calls=False),
        reset_tool_choice=False,  # the forced tool stays forced: the server ends with the output
        tools=[lookup],
        output_type=Parcel,
    )
    result = Runner.run_sync(agent, "Ship my parcel.", max_turns=3)
    assert calls and isinstance(calls[0], Address) and isinstance(result.final_output, Parcel)
