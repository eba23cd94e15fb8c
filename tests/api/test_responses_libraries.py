"""The agent libraries whose default is the Responses API, unchanged, against the shared real
server: openai-agents (an agent with a tool and an output type; an agent whose tool call ends
the run) and pydantic-ai's OpenAIResponsesModel (tool output and native output). Schemas are
bounded (enums, booleans): a random model never closes a free string; parallel calls are off, as
a random model under a forced call's grammar would add calls up to the token cap."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel

from tests.conftest import API_KEY


class Verdict(BaseModel):
    ok: bool
    mood: Literal["good", "bad"]


@pytest.fixture
def async_client(web_server):
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def weather_tool(calls: list):
    def get_weather(city: Literal["Paris", "Oslo"]) -> str:
        """The weather in a city today."""
        calls.append(city)
        return "sunny"

    return get_weather


@pytest.fixture
def agents_sdk(async_client):
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    return agents, agents.OpenAIResponsesModel(model="phi4mm", openai_client=async_client)


@pytest.mark.parametrize("streamed", [False, True])
def test_openai_agents_with_a_tool_and_an_output_type(agents_sdk, streamed):
    import asyncio

    agents, model = agents_sdk
    calls = []
    agent = agents.Agent(
        name="forecaster",
        instructions="Answer with a verdict.",
        model=model,
        tools=[agents.function_tool(weather_tool(calls))],
        output_type=Verdict,
        # On auto a random model may call the tool on every turn; kept required, the server forces
        # the call until a tool result, then the output type (OpenAI's forced tool + format)
        model_settings=agents.ModelSettings(max_tokens=60, tool_choice="required", parallel_tool_calls=False),
        reset_tool_choice=False,
    )
    if streamed:

        async def run():
            result = agents.Runner.run_streamed(agent, "Weather in Paris?", max_turns=4)
            async for _ in result.stream_events():
                pass
            return result

        result = asyncio.run(run())
    else:
        result = agents.Runner.run_sync(agent, "Weather in Paris?", max_turns=4)
    assert isinstance(result.final_output, Verdict)
    assert len(calls) == 1 and calls[0] in ("Paris", "Oslo")


def test_openai_agents_a_required_tool_ends_the_run(agents_sdk):
    agents, model = agents_sdk
    calls = []
    agent = agents.Agent(
        name="caller",
        model=model,
        tools=[agents.function_tool(weather_tool(calls))],
        tool_use_behavior="stop_on_first_tool",
        model_settings=agents.ModelSettings(max_tokens=60, tool_choice="required", parallel_tool_calls=False),
    )
    result = agents.Runner.run_sync(agent, "Weather in Paris?", max_turns=2)
    assert result.final_output == "sunny" and len(calls) == 1 and calls[0] in ("Paris", "Oslo")


@pytest.mark.parametrize("native", [False, True])
def test_pydantic_ai_responses_model_gives_the_output_type(web_server, native):
    pydantic_ai = pytest.importorskip("pydantic_ai")
    from pydantic_ai.models.openai import OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    model = OpenAIResponsesModel("phi4mm", provider=OpenAIProvider(base_url=web_server + "/v1", api_key=API_KEY))
    output = pydantic_ai.NativeOutput(Verdict) if native else Verdict  # text.format, or a forced output tool
    agent = pydantic_ai.Agent(
        model, output_type=output, model_settings={"max_tokens": 150, "parallel_tool_calls": False}
    )
    result = agent.run_sync("Is the weather good?")
    assert isinstance(result.output, Verdict)
