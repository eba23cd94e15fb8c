"""Issue 28's new routes through the official `openai` client on the shared real server: a model
by id, transcripts streamed and as WebVTT, translations, and the Responses API (instructions,
tools and their outputs, text.format, streamed events, previous_response_id). The tiny model's
text is random: only a grammar (a forced tool, a json_schema) makes its answer a call or an object."""

from __future__ import annotations

import base64
import json

import httpx
import openai
import pytest

from app.api_errors import ModelNotFound
from app.responses import ResponseStore
from app.transcription import check_model
from core.settings import Settings
from tests.conftest import API_KEY
from tooling.inputs import encode_audio, make_photo, make_tone

WAV = encode_audio(make_tone(2.0), 16000, "wav")
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city today.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
VERDICT = {
    "type": "json_schema",
    "name": "verdict",
    "schema": {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "mood": {"enum": ["good", "bad"]}},
        "required": ["ok", "mood"],
        "additionalProperties": False,
    },
}


@pytest.fixture
def client(web_server):
    return openai.OpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120, **kwargs)


def test_a_model_by_id_and_an_unknown_one_as_openai_answers(client):
    assert client.models.retrieve("phi4mm").model_dump(exclude_none=True) == {
        "id": "phi4mm",
        "object": "model",
        "created": 0,
        "owned_by": "phi4mm",
    }
    assert client.models.retrieve("vision").id == "vision"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.body["code"] == "model_not_found" and err.value.body["param"] == "model"


def test_a_transcript_streams_as_deltas_then_the_whole_text(client):
    events = list(client.audio.transcriptions.create(model="phi4mm", file=("tone.wav", WAV), stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) == {"transcript.text.delta"}
    assert len(kinds) > 2  # token by token, not the whole text in one event
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


@pytest.mark.slow  # three 30 s segments, each decoded twice (~7 s)
def test_a_long_transcript_streams_its_segments_in_order_as_the_whole_answer_has_them(client):
    """Three ~30 s segments, each prepared off the event loop mid-stream (app/sse_stream.py OffLoop):
    the deltas add up to the done text, which is the unstreamed transcript (greedy both)."""
    long_wav = encode_audio(make_tone(70.0), 16000, "wav")
    events = list(client.audio.transcriptions.create(model="phi4mm", file=("long.wav", long_wav), stream=True))
    assert events[-1].type == "transcript.text.done"
    assert "".join(e.delta for e in events[:-1]) == events[-1].text
    whole = client.audio.transcriptions.create(model="phi4mm", file=("long.wav", long_wav), response_format="srt")
    assert whole.count(" --> ") == 3  # three segments
    unstreamed = client.audio.transcriptions.create(model="phi4mm", file=("long.wav", long_wav)).text
    assert events[-1].text.split() == unstreamed.split()


def test_a_transcript_as_webvtt(client):
    vtt = client.audio.transcriptions.create(model="phi4mm", file=("tone.wav", WAV), response_format="vtt")
    head, cue = vtt.split("\n\n")[:2]
    assert head == "WEBVTT" and cue.startswith("00:00:00.000 --> 00:00:02.000\n")


def test_a_translation_uses_the_translation_prompt(client):
    raw = client.audio.translations.with_raw_response.create(model="whisper-1", file=("tone.wav", WAV))
    assert raw.headers["x-phi4mm-adapter"] == "speech"
    translated = raw.parse().text
    transcribed = client.audio.transcriptions.create(model="whisper-1", file=("tone.wav", WAV)).text
    assert translated and translated != transcribed  # greedy both: only the prompt differs


def test_a_translation_streams_as_a_transcript_does(web_server, client):
    """`stream` was not a field of the translation form: it was dropped, and a JSON body came back."""
    response = post(web_server + "/v1/audio/translations", files={"file": ("tone.wav", WAV)}, data={"stream": "true"})
    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1]["type"] == "transcript.text.done" and len(events) > 2
    assert "".join(e["delta"] for e in events[:-1]) == events[-1]["text"]
    assert events[-1]["text"] == client.audio.translations.create(model="whisper-1", file=("tone.wav", WAV)).text


def test_a_transcription_needs_no_model_and_streams_json_or_text_only(web_server):
    url = web_server + "/v1/audio/transcriptions"
    assert post(url, files={"file": ("tone.wav", WAV)}).json()["text"]
    refused = post(url, files={"file": ("tone.wav", WAV)}, data={"stream": "true", "response_format": "srt"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream"


def test_the_transcription_model_check_takes_the_served_name_or_none():
    settings = Settings(model="/tmp/x", served_model_name="my-phi")
    for name in (None, "my-phi", "whisper-1", "speech"):
        check_model(name, settings)
    with pytest.raises(ModelNotFound):
        check_model("phi4mm", settings)


def test_a_response_with_instructions_and_its_continuation(client):
    first = client.responses.create(model="phi4mm", input="Hello", instructions="Be brief.", max_output_tokens=4)
    assert first.status == "incomplete" and first.incomplete_details.reason == "max_output_tokens"
    assert first.output[0].type == "message" and first.output_text and first.usage.output_tokens == 4
    second = client.responses.create(model="phi4mm", input="And?", previous_response_id=first.id, max_output_tokens=2)
    # the kept conversation (the first input and answer) comes first; the instructions do not carry over
    assert second.usage.input_tokens > first.usage.input_tokens
    assert second.previous_response_id == first.id


def test_a_response_not_stored_cannot_be_continued(client):
    gone = client.responses.create(model="phi4mm", input="Hello", max_output_tokens=1, store=False)
    with pytest.raises(openai.NotFoundError) as err:
        client.responses.create(model="phi4mm", input="And?", previous_response_id=gone.id)
    assert err.value.body["param"] == "previous_response_id"


# one call, forced: a random model would add calls up to the cap
ONE_FORCED_CALL = dict(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False, max_output_tokens=120)


def test_a_forced_tool_call_and_its_output(client):  # one call: a random model would add calls to the cap
    called = client.responses.create(
        model="phi4mm",
        input="Weather in Paris?",
        **ONE_FORCED_CALL,
    )
    call = called.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments)["city"] in ("Paris", "Oslo") and called.status == "completed"
    result = {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}
    answer = client.responses.create(
        model="phi4mm",
        input=[{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True), result],
        tools=[WEATHER],
        tool_choice="required",  # forced until a tool result, then the format (on auto: a call or the format)
        text={"format": VERDICT},
        max_output_tokens=40,
    )
    assert set(json.loads(answer.output_text)) == {"ok", "mood"}
    assert answer.usage.input_tokens > called.usage.input_tokens  # the call and its output were read


def test_a_streamed_text_answer_has_openais_events(client):
    with client.responses.stream(model="phi4mm", input="Hi", text={"format": VERDICT}, max_output_tokens=40) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert kinds.count("response.output_text.delta") > 1
    assert set(json.loads(final.output_text)) == {"ok", "mood"}


def test_a_streamed_tool_call_has_argument_events(client):
    with client.responses.stream(
        model="phi4mm",
        input="Weather?",
        **ONE_FORCED_CALL,
    ) as s:
        events = list(s)
        final = s.get_final_response()
    kinds = [e.type for e in events]
    assert "response.output_text.delta" not in kinds  # a call's text never shows as text
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert final.output[0].type == "function_call" and final.output[0].arguments == done.arguments


def test_an_image_and_a_voice_note_in_the_input_pick_their_adapters(client):
    import io

    buffer = io.BytesIO()
    make_photo(64, 64).save(buffer, format="PNG")
    image = {
        "type": "input_image",
        "image_url": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }
    audio = {"type": "input_audio", "input_audio": {"data": base64.b64encode(WAV).decode(), "format": "wav"}}
    for part, adapter in ((image, "vision"), (audio, "speech")):
        content = [part, {"type": "input_text", "text": "What is this?"}]
        raw = client.responses.with_raw_response.create(
            model="phi4mm", input=[{"role": "user", "content": content}], max_output_tokens=1
        )
        assert raw.headers["x-phi4mm-adapter"] == adapter and raw.parse().usage.output_tokens == 1


@pytest.mark.parametrize(
    "body, param",
    [
        ({"input": "hi", "logit_bias": {}}, "logit_bias"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]}, "input[0].content[0]"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0].type"),
    ],
)
def test_a_responses_request_we_cannot_serve_is_a_400_naming_the_field(web_server, body, param):
    response = post(web_server + "/v1/responses", json={"model": "phi4mm", **body})
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_the_response_store_keeps_the_newest_and_forgets_the_old(monkeypatch):
    now = [100.0]
    monkeypatch.setattr("app.responses.time.monotonic", lambda: now[0])
    store = ResponseStore(count=2, minutes=1)
    for name in ("a", "b", "c"):
        store.keep(name, [{"role": "user", "content": name}])
    assert store.conversation("a") is None and store.conversation("c") == [{"role": "user", "content": "c"}]
    now[0] += 61
    assert store.conversation("c") is None
    by_size = ResponseStore(count=10, minutes=1, max_bytes=150)
    by_size.keep("small", [{"role": "user", "content": "x"}])
    by_size.keep("large", [{"role": "user", "content": "y" * 60}])
    assert by_size.conversation("small") is not None  # both kept: 125 bytes of JSON together
    by_size.keep("larger", [{"role": "user", "content": "z" * 60}])
    assert by_size.conversation("small") is None and by_size.conversation("large") is None
    assert by_size.conversation("larger") is not None


def test_openapi_documents_requests_and_answers(web_server):
    doc = httpx.get(web_server + "/openapi.json", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    schemas = doc["components"]["schemas"]
    for path, request, answer in (
        ("/v1/chat/completions", "ChatCompletionRequest", "ChatCompletion"),
        ("/v1/responses", "ResponsesRequest", "ResponseObject"),
    ):
        operation = doc["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + request)
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + answer)
        assert operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
        assert request in schemas and answer in schemas
    assert "messages" in schemas["ChatCompletionRequest"]["properties"]
    kept = doc["paths"]["/v1/responses/{response_id}"]
    for method, answer in (("get", "ResponseObject"), ("delete", "DeletedResponse")):
        assert kept[method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + answer)
        assert "404" in kept[method]["responses"]
    assert list(doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    form = doc["paths"]["/v1/audio/translations"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "file" in schemas[form["schema"]["$ref"].split("/")[-1]]["required"]


def test_tokenize_and_detokenize_as_vllm_has_them(web_server, client):
    said = post(web_server + "/tokenize", json={"model": "phi4mm", "prompt": "Hello world", "return_token_strs": True})
    tokens = said.json()
    assert tokens["count"] == len(tokens["tokens"]) == len(tokens["token_strs"]) > 0 and tokens["max_model_len"] > 0
    assert post(web_server + "/detokenize", json={"tokens": tokens["tokens"]}).json() == {"prompt": "Hello world"}
    hi = [{"role": "user", "content": "Hello world"}]
    counted = post(web_server + "/tokenize", json={"messages": hi}).json()["count"]
    assert counted == client.chat.completions.create(model="phi4mm", messages=hi, max_tokens=1).usage.prompt_tokens
    for url, body, param in (
        ("/tokenize", {"prompt": "a", "messages": hi}, "prompt"),
        ("/tokenize", {"prompt": "a", "model": "gpt-4o"}, "model"),
        ("/detokenize", {"tokens": [-1]}, "tokens"),
        ("/detokenize", {"tokens": "1 2"}, "tokens"),
    ):
        refused = post(web_server + url, json=body)
        assert refused.status_code in (400, 404) and refused.json()["error"]["param"] == param
