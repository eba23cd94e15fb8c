"""Kept responses and the input items agent libraries send back, through the official `openai`
client on the shared real server: `GET` and `DELETE /v1/responses/{id}` (OpenAI's 404 for one not
kept), a streamed response kept like a whole one, a `reasoning` item from an earlier turn taken
and left out, and an item of an unknown type refused by name."""

from __future__ import annotations

import httpx
import openai
import pytest

from app.responses import ResponseStore
from tests.conftest import API_KEY


@pytest.fixture
def client(web_server):
    return openai.OpenAI(base_url=web_server + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def not_found(call, *args, **kwargs) -> dict:
    """OpenAI's 404 body for a response that is not kept."""
    with pytest.raises(openai.NotFoundError) as err:
        call(*args, **kwargs)
    return err.value.body


def test_a_kept_response_is_read_back_and_deleted(client):
    made = client.responses.create(model="phi4mm", input="Hello", instructions="Be brief.", max_output_tokens=3)
    read = client.responses.retrieve(made.id)
    assert read.model_dump() == made.model_dump()  # the response as it was sent
    client.responses.delete(made.id)  # the SDK reads no body: a 2xx is the answer
    body = not_found(client.responses.retrieve, made.id)
    assert body["type"] == "invalid_request_error" and made.id in body["message"]
    not_found(client.responses.delete, made.id)
    not_found(client.responses.create, model="phi4mm", input="And?", previous_response_id=made.id)


def test_a_delete_answers_as_openai_does(web_server, client):
    made = client.responses.create(model="phi4mm", input="Hi", max_output_tokens=1)
    url = f"{web_server}/v1/responses/{made.id}"
    deleted = httpx.delete(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30)
    assert deleted.status_code == 200 and deleted.json() == {"id": made.id, "object": "response", "deleted": True}


def test_a_response_not_stored_or_never_made_is_not_found(client):
    unstored = client.responses.create(model="phi4mm", input="Hi", max_output_tokens=1, store=False)
    for response_id in (unstored.id, "resp_never"):
        body = not_found(client.responses.retrieve, response_id)
        assert body["message"] == f"Response with id {response_id!r} not found." and body["code"] is None


def test_a_streamed_response_is_kept_whole(client):
    events = list(client.responses.create(model="phi4mm", input="Hi", max_output_tokens=3, stream=True))
    assert events[-1].type == "response.incomplete"  # at the token cap
    final = events[-1].response
    read = client.responses.retrieve(final.id)
    assert read.status == final.status and read.output_text == final.output_text
    assert read.usage.output_tokens == final.usage.output_tokens == 3


def test_a_reasoning_item_from_an_earlier_turn_is_taken_and_left_out(client):
    said = [{"role": "user", "content": "Hello"}]
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Thinking."}]}
    plain = client.responses.create(model="phi4mm", input=said, max_output_tokens=1)
    with_reasoning = client.responses.create(model="phi4mm", input=[*said, reasoning], max_output_tokens=1)
    assert with_reasoning.usage.input_tokens == plain.usage.input_tokens  # was a 400 about `message` items


def test_an_unknown_item_type_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model="phi4mm",
            input=[{"role": "user", "content": "Hi"}, {"type": "web_search_call", "id": "ws_1"}],
            max_output_tokens=1,
        )
    assert err.value.body["param"] == "input[1]"
    assert "'web_search_call'" in err.value.body["message"] and "reasoning" in err.value.body["message"]


def test_the_store_forgets_on_delete_and_counts_the_response_too():
    store = ResponseStore(count=10, minutes=1, max_bytes=200)
    store.keep("a", [{"role": "user", "content": "x"}], {"id": "a", "text": "y" * 100})
    assert store.get("a").response["id"] == "a"
    assert store.delete("a") and store.get("a") is None and not store.delete("a")
    store.keep("b", [{"role": "user", "content": "x"}], {"id": "b", "text": "y" * 200})
    assert store.get("b") is None  # over the bytes with its response, though its conversation fits
