"""`POST /v1/responses`, OpenAI's Responses API (the default of openai-agents and pydantic-ai), on
the chat completions path: the request becomes a chat request (app/responses.py), planned,
admitted, decoded and answered as one (app/chat_request.py, app/service.py); the answer comes back
as output items, whole or as events (app/responses_stream.py, sent as a chat stream is: checked
before the 200, app/sse_stream.py). A response this server kept (`store`, the default) in
memory, bounded by `responses_kept`, `responses_kept_minutes` and `responses_kept_mb`, is
continued by `previous_response_id`, read back by `GET /v1/responses/{id}` and forgotten by
`DELETE /v1/responses/{id}`."""

from __future__ import annotations

import threading
import time

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api import ADAPTER_HEADER, until_disconnect
from app.api_errors import APIError, NotFound, TooLarge
from app.chat_content import to_messages
from app.chat_request import choice, plan, read_request
from app.metrics import ServerMetrics
from app.openapi import documented
from app.responses import (
    ResponseStore,
    as_history,
    chat_request,
    finished,
    input_messages,
    new_id,
    output_items,
    renamed,
)
from app.responses_schema import DeletedResponse, ResponseObject, ResponsesRequest, TextConfig, TextFormat
from app.responses_stream import response_events
from app.service import ConversationService
from app.sse_stream import open_stream
from core.errors import InvalidRequest, Phi4mmError
from core.settings import Settings


def build_responses_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    store = ResponseStore(settings.responses_kept, settings.responses_kept_minutes, settings.responses_kept_mb * 2**20)
    max_body = settings.max_upload_mb * 2**20

    @router.post("/responses", **documented(ResponseObject, streams=True, request=ResponsesRequest))
    async def responses(request: Request):
        return metrics.answered("responses", await _respond(request))

    @router.get("/responses/{response_id}", **documented(ResponseObject))
    async def retrieve(response_id: str, stream: bool = Query(False)):
        if stream:
            raise InvalidRequest("A kept response is read back whole here; `stream` is not supported.", "stream")
        if (found := store.get(response_id)) is None:
            raise missing(response_id)
        return metrics.answered("responses", JSONResponse(found.response))

    @router.delete("/responses/{response_id}", **documented(DeletedResponse))
    async def delete(response_id: str):
        if not store.delete(response_id):
            raise missing(response_id)
        return metrics.answered("responses", JSONResponse(DeletedResponse(id=response_id).model_dump()))

    def conversation_of(body: ResponsesRequest) -> list[dict]:
        """The earlier conversation (previous_response_id), then this request's input."""
        history = []
        if body.previous_response_id:
            history = store.conversation(body.previous_response_id)
            if history is None:
                raise NotFound(
                    f"Previous response with id {body.previous_response_id!r} not found (kept: the newest "
                    f"{store.count}, for {settings.responses_kept_minutes:g} minutes).",
                    "previous_response_id",
                    "previous_response_not_found",
                )
        return history + input_messages(body.input)

    async def _respond(request: Request):
        raw = await request.body()
        if len(raw) > max_body:
            raise TooLarge(f"The request body is over {settings.max_upload_mb} MB.")
        body = read_request(raw, ResponsesRequest)
        conversation = conversation_of(body)
        try:
            chat_body = chat_request(body, conversation)
            chat_plan = plan(chat_body, settings, service.engine.adapters)
        except InvalidRequest as err:
            raise renamed(err) from None
        ticket = admission.enter()  # before decoding: the slots bound the decoded media's memory too
        try:
            messages = await run_in_threadpool(to_messages, chat_body.messages, settings)
        except BaseException as err:
            ticket.release()
            raise renamed(err) from None
        headers = {ADAPTER_HEADER: service.adapter_for(messages, chat_plan.adapter)}
        template = ResponseObject(
            id=new_id("resp"),
            created_at=int(time.time()),
            status="in_progress",
            model=settings.served_name(),
            instructions=body.instructions,
            tools=body.tools or [],
            tool_choice=body.tool_choice or "auto",
            parallel_tool_calls=body.parallel_tool_calls is not False,
            temperature=body.temperature,
            top_p=body.top_p,
            max_output_tokens=body.max_output_tokens,
            previous_response_id=body.previous_response_id,
            store=body.store,
            text=body.text or TextConfig(format=TextFormat(type="text")),
            metadata=body.metadata or {},
        )

        def keep(response: ResponseObject) -> None:
            if body.store:
                store.keep(response.id, conversation + as_history(response.output), response.model_dump(by_alias=True))

        if body.stream:
            return await open_stream(
                service,
                messages,
                chat_plan,
                ticket,
                headers,
                lambda r: response_events(r, chat_plan, template, keep),
                renamed,
            )

        def answer(cancel: threading.Event):
            return service.answer(messages, chat_plan.params[0], cancel=cancel, **chat_plan.options())

        try:
            with ticket:
                text, final = await until_disconnect(request, answer)
        except Phi4mmError as err:
            raise APIError(renamed(err), headers) from None
        reply = choice(0, text, final, chat_plan.tools)
        response = finished(template, reply, final.finish_reason, final.metrics, output_items(reply))
        keep(response)
        return JSONResponse(response.model_dump(by_alias=True), headers=headers)

    return router


def missing(response_id: str) -> NotFound:
    """OpenAI's 404 for a response not kept: never made, `store: false`, forgotten or deleted."""
    return NotFound(f"Response with id {response_id!r} not found.", code=None)
