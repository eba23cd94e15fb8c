"""OpenAI API parity through the official `openai` client on the shared real server: model names,
usage in streams, n, penalties, structured output by grammar, and function calling in Phi-4-mini's
format with the grammar forcing the call (the tiny model's output is random: only a grammar can
make it a valid call or a valid object)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from app.chat_schema import Tool
from app.tool_calls import parse_calls
from tests.conftest import API_KEY

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city today.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Oslo"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 3},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}, "additionalProperties": False}},
}
HI = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
def client(web_server):
    return openai.OpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_models_lists_the_served_name_and_the_adapters(client):
    assert [m.id for m in client.models.list().data] == ["phi4mm", "vision", "speech"]  # never a local path


def test_an_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2)
    assert err.value.body["code"] == "model_not_found"


def test_naming_an_adapter_forces_it(client):
    raw = client.chat.completions.with_raw_response.create(model="speech", messages=HI, max_tokens=2)
    assert raw.headers["x-phi4mm-adapter"] == "speech"
    assert raw.parse().model == "phi4mm"


def test_a_stream_carries_usage_only_when_asked(client):
    plain = list(client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=3, stream=True))
    assert all(c.usage is None for c in plain) and plain[-1].choices[0].finish_reason in ("stop", "length")
    asked = list(
        client.chat.completions.create(
            model="phi4mm", messages=HI, max_tokens=3, stream=True, stream_options={"include_usage": True}
        )
    )
    assert asked[-1].choices == [] and asked[-1].usage.completion_tokens >= 1
    assert all(c.usage is None for c in asked[:-1])


def test_n_choices_with_distinct_seeds(client):
    completion = client.chat.completions.create(
        model="phi4mm", messages=HI, max_tokens=6, n=3, temperature=1.5, seed=11
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    texts = [c.message.content for c in completion.choices]
    assert len(set(texts)) > 1  # seeds 11, 12, 13: not one answer three times
    assert completion.usage.completion_tokens == 3 * 6 or completion.usage.completion_tokens < 18
    again = client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=6, n=3, temperature=1.5, seed=11)
    assert [c.message.content for c in again.choices] == texts  # and reproducible


def test_penalties_are_taken_and_checked(client):
    plain = client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=12)
    penalised = client.chat.completions.create(
        model="phi4mm", messages=HI, max_tokens=12, frequency_penalty=2.0, presence_penalty=2.0
    )
    assert plain.choices[0].message.content != penalised.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="presence_penalty"):
        client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=2, presence_penalty=3)


@pytest.mark.parametrize("field, value", [("logit_bias", {"5": 1}), ("functions", []), ("best_of", 2)])
def test_a_field_we_do_not_support_is_a_400_naming_it(web_server, field, value):
    response = httpx.post(
        web_server + "/v1/chat/completions",
        timeout=30,
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "phi4mm", "messages": HI, field: value},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field and "not supported" in response.json()["error"]["message"]


SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 20},
        "sure": {"type": "boolean"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["answer", "sure", "tags"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_output_validates(client, temperature):
    completion = client.chat.completions.create(
        model="phi4mm",
        messages=HI,
        max_tokens=120,
        temperature=temperature,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}},
    )
    value = json.loads(completion.choices[0].message.content)
    assert set(value) == {"answer", "sure", "tags"} and isinstance(value["sure"], bool)
    assert len(value["answer"]) <= 20 and set(value["tags"]) <= {"a", "b"} and len(value["tags"]) <= 3
    assert completion.choices[0].finish_reason == "stop"


def test_json_object_output_is_an_object(client):
    completion = client.chat.completions.create(
        model="phi4mm", messages=HI, max_tokens=200, response_format={"type": "json_object"}
    )
    text = completion.choices[0].message.content
    if completion.choices[0].finish_reason == "stop":  # an open object may run to the length cap
        assert isinstance(json.loads(text), dict)
    assert text.startswith("{")


def test_a_schema_that_cannot_be_used_is_a_400(client):
    with pytest.raises(openai.BadRequestError, match="constrained decoding"):
        client.chat.completions.create(
            model="phi4mm",
            messages=HI,
            max_tokens=2,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objectz"}}},
        )


def forced_call(client):
    """A completion that must call one of WEATHER and TIME (once: the tiny model's random weights
    would otherwise fill the token budget with calls)."""
    return client.chat.completions.create(
        model="phi4mm",
        messages=HI,
        tools=[WEATHER, TIME],
        tool_choice="required",
        max_tokens=80,
        parallel_tool_calls=False,
    )


def test_a_forced_call_round_trip(client):
    first = forced_call(client)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    assert call.id.startswith("call_") and call.function.name in ("get_weather", "get_time")
    if call.function.name == "get_weather":
        arguments = json.loads(call.function.arguments)
        assert arguments["city"] in ("Paris", "Oslo") and 1 <= arguments["days"] <= 3
    history = HI + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "clear", "celsius": 21}'},
    ]
    second = client.chat.completions.create(model="phi4mm", messages=history, tools=[WEATHER, TIME], max_tokens=8)
    assert second.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_a_named_call_streams_its_arguments_as_written(client):
    chunks = list(
        client.chat.completions.create(
            model="phi4mm",
            messages=HI,
            tools=[WEATHER, TIME],
            max_tokens=80,
            stream=True,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    first, pieces = deltas[0], deltas[1:]
    assert first.index == 0 and first.id.startswith("call_") and first.function.name == "get_weather"
    assert first.function.arguments == "" and len(pieces) > 1  # OpenAI's shape: the head, then pieces
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in pieces)
    assert json.loads("".join(d.function.arguments for d in pieces))["city"] in ("Paris", "Oslo")
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not any(c.choices and c.choices[0].delta.content for c in chunks)  # nothing of the call as text
    assert {c.system_fingerprint for c in chunks} == {"fp_phi4mm"}


def test_tool_choice_none_and_unknown_names(client):
    answer = client.chat.completions.create(
        model="phi4mm", messages=HI, tools=[WEATHER], tool_choice="none", max_tokens=4
    )
    assert answer.choices[0].message.tool_calls is None
    with pytest.raises(openai.BadRequestError, match="not among the tools"):
        client.chat.completions.create(
            model="phi4mm",
            messages=HI,
            tools=[WEATHER],
            max_tokens=4,
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )


@pytest.mark.parametrize(
    "text",
    [
        'functools[{"name": "get_weather", "arguments": {"city": ',
        "functools",
        'functools[{"arguments": {}}]',
        "functools[1]",
    ],
)
def test_a_malformed_call_is_text(text):
    assert parse_calls(text) is None


def test_a_well_formed_call_is_parsed():
    calls = parse_calls('functools[{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}]')
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments)["days"] == 2
    assert Tool.model_validate(WEATHER).function.name == "get_weather"


def test_logprobs_of_every_token_with_the_likeliest(client):
    completion = client.chat.completions.create(
        model="phi4mm", messages=HI, max_tokens=6, logprobs=True, top_logprobs=3
    )
    entries = completion.choices[0].logprobs.content
    assert len(entries) == completion.usage.completion_tokens
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)  # greedy: the likeliest was chosen
    assert "".join(e.token for e in entries).startswith(completion.choices[0].message.content[:3])
    streamed = list(
        client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=6, logprobs=True, stream=True)
    )
    tokens = [e.token for c in streamed if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]
    assert tokens == [e.token for e in entries]  # the same greedy tokens, one entry per token
    with pytest.raises(openai.BadRequestError, match="top_logprobs"):
        client.chat.completions.create(model="phi4mm", messages=HI, max_tokens=2, top_logprobs=2)


def test_top_logprobs_under_a_grammar_list_only_tokens_it_allows(client):
    """A JSON schema leaves most tokens no chance (-inf, which JSON cannot carry): they are not
    listed as alternatives, and the answer is a 200, not a 500."""
    schema = {"type": "object", "properties": {"a": {"enum": [1, 2]}}, "required": ["a"], "additionalProperties": False}
    completion = client.chat.completions.create(
        model="phi4mm",
        messages=HI,
        max_tokens=8,
        logprobs=True,
        top_logprobs=5,
        response_format={"type": "json_schema", "json_schema": {"name": "pick", "schema": schema, "strict": True}},
    )
    entries = completion.choices[0].logprobs.content
    assert entries and all(1 <= len(entry.top_logprobs) <= 5 for entry in entries)
    assert any(len(entry.top_logprobs) < 5 for entry in entries)  # somewhere the grammar allowed fewer
    assert all(top.logprob > -1e30 for entry in entries for top in entry.top_logprobs)


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    from tooling.inputs import speak

    path = tmp_path_factory.mktemp("spoken") / "hello.wav"
    speak("Hello, this is a short note about the weather in Paris.", path)
    return path


def test_transcription_language_hint_and_detection(client, spoken):
    with open(spoken, "rb") as audio:
        hinted = client.audio.transcriptions.create(
            model="phi4mm",
            file=audio,
            response_format="verbose_json",
            language="fr",
            prompt="Paris",
            temperature=0.2,
            timestamp_granularities=["segment"],
        )
    assert hinted.language == "french" and hinted.segments[0].end > 1
    with open(spoken, "rb") as audio:
        found = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="verbose_json")
    assert found.language in {
        "english",
        "chinese",
        "german",
        "french",
        "italian",
        "japanese",
        "spanish",
        "portuguese",
    }  # the tiny model's random pick, held to the eight by the grammar


@pytest.mark.parametrize(
    "options, param",
    [
        ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
        ({"language": "klingon"}, "language"),
        ({"temperature": 1.5}, "temperature"),
    ],
)
def test_transcription_options_we_cannot_honour_are_400(client, spoken, options, param):
    with open(spoken, "rb") as audio, pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="phi4mm", file=audio, **options)
    assert err.value.body["param"] == param


def test_transcription_with_an_unknown_model_is_404(client, spoken):
    with open(spoken, "rb") as audio, pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="gpt-4o-transcribe", file=audio)


def test_each_row_of_a_batch_keeps_its_own_grammar(client):
    """n sampled choices run as rows of one batch, each with its own matcher: all valid."""
    completion = client.chat.completions.create(
        model="phi4mm",
        messages=HI,
        max_tokens=120,
        n=4,
        temperature=1.0,
        seed=5,
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": SCHEMA}},
    )
    values = [json.loads(c.message.content) for c in completion.choices]
    assert all(set(v) == {"answer", "sure", "tags"} for v in values)
    assert len({json.dumps(v) for v in values}) > 1  # distinct seeds: distinct objects


def test_a_malformed_transcription_form_is_a_400_naming_the_field(web_server, spoken):
    response = httpx.post(
        web_server + "/v1/audio/transcriptions",
        timeout=30,
        headers={"Authorization": f"Bearer {API_KEY}"},
        files={"file": ("hello.wav", spoken.read_bytes())},
        data={"temperature": "hot"},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "temperature"
    missing = httpx.post(
        web_server + "/v1/audio/transcriptions",
        timeout=30,
        headers={"Authorization": f"Bearer {API_KEY}"},
        data={"model": "phi4mm"},
    )
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"
