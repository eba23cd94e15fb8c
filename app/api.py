"""OpenAI-compatible HTTP API (`/v1`), served beside the browser app, through the same
conversation service (so the safety mitigations and the output guard apply).

    POST /v1/chat/completions       text, image_url (data: URIs only), input_audio; stream: true -> SSE
    GET  /v1/models, /v1/models/{id}
    (the audio routes are app/audio_api.py's, /v1/responses app/responses_api.py's, /tokenize app/tokenize_api.py's)

The wire format is app/chat_schema.py's models; errors are raised here and answered by the one
handler in app/api_errors.py with OpenAI's body: 400 bad input (422 a body that is no JSON
object), 401 bad key and 413 too large (both from the headers, in app/gate.py), 429 +
Retry-After when every slot and queue place is taken, 500 when generating failed, 503 when a
remote engine cannot be reached or the server is stopping. Media URLs are never fetched (no
server-side request forgery): send a data: URI.

A request is admitted before its media is decoded, so the slots bound that memory too, and a
client that goes away (streaming or not) cancels its generation and frees its slot at once. A
stream is refused with the same status and body as any request: everything that can refuse it
runs before its 200 (app/sse_stream.py sends it).
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api_errors import APIError, ModelNotFound, TooLarge
from app.chat_content import to_messages
from app.chat_request import (
    ChatPlan,
    choice,
    completion_body,
    model_names,
    plan,
    read_request,
    usage,
)
from app.chat_schema import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Model,
    ModelList,
)
from app.metrics import ServerMetrics
from app.openapi import documented
from app.service import ConversationService
from app.sse_stream import EventStream, client_left, open_stream, sse_events
from core.errors import Phi4mmError
from core.settings import Settings

ADAPTER_HEADER = "X-Phi4mm-Adapter"
# The API's routes by their label in /metrics (app/gate.py counts what it refuses under these too).
ENDPOINTS = {
    "/v1/models": "models",
    "/v1/chat/completions": "chat",
    "/v1/audio/transcriptions": "transcriptions",
    "/v1/audio/translations": "translations",
    "/v1/responses": "responses",
    "/tokenize": "tokenize",
    "/detokenize": "detokenize",
}


def build_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    max_body = settings.max_upload_mb * 2**20

    @router.get("/models", **documented(ModelList))
    async def models(request: Request):
        names = model_names(settings, service.engine.adapters)  # the adapters loaded, no others
        return metrics.answered("models", JSONResponse(ModelList(data=[Model(id=name) for name in names]).model_dump()))

    @router.get("/models/{model_id:path}", **documented(Model))  # :path: a hub id has a slash
    async def model(model_id: str):
        if model_id not in model_names(settings, service.engine.adapters):
            raise ModelNotFound(f"The model {model_id!r} does not exist here.")
        return metrics.answered("models", JSONResponse(Model(id=model_id).model_dump()))

    @router.post("/chat/completions", **documented(ChatCompletion, streams=True, request=ChatCompletionRequest))
    async def chat_completions(request: Request):
        return metrics.answered("chat", await _chat(request))

    async def _chat(request: Request):
        raw = await request.body()
        if len(raw) > max_body:
            raise TooLarge(f"The request body is over {settings.max_upload_mb} MB.")
        body = read_request(raw)
        chat_plan = plan(body, settings, service.engine.adapters)
        ticket = admission.enter()  # before decoding: the slots bound the decoded media's memory too
        try:
            messages = await run_in_threadpool(to_messages, body.messages, settings)
        except BaseException:
            ticket.release()
            raise
        headers = {ADAPTER_HEADER: service.adapter_for(messages, chat_plan.adapter)}
        template = ChatCompletionChunk(
            id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=settings.served_name(), choices=[]
        )
        if body.stream:
            return await _stream(body, messages, chat_plan, template, ticket, headers)

        def answers(cancel: threading.Event):
            def one(params):
                return service.answer(messages, params, cancel=cancel, **chat_plan.options())

            with ThreadPoolExecutor(len(chat_plan.params)) as pool:  # n choices: rows of one batch
                return list(pool.map(one, chat_plan.params))

        try:
            with ticket:
                results = await until_disconnect(request, answers)
        except Phi4mmError as err:
            raise APIError(err, headers) from None
        answer = ChatCompletion(
            id=template.id,
            created=template.created,
            model=template.model,
            usage=usage([final.metrics for _, final in results]),
            choices=[choice(i, text, final, chat_plan.tools) for i, (text, final) in enumerate(results)],
        )
        return JSONResponse(completion_body(answer), headers=headers)

    async def _stream(body, messages, chat_plan: ChatPlan, template, ticket, headers) -> EventStream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await open_stream(
            service, messages, chat_plan, ticket, headers, lambda r: sse_events(r, chat_plan, template, include_usage)
        )

    return router


async def until_disconnect(request: Request, work):
    """Runs `work(cancel)` in a worker thread; if the client goes away before it is done, `cancel`
    is set, so a non-streaming request stops generating for nobody."""
    cancel = threading.Event()

    async def watch():
        await client_left(request.receive)
        cancel.set()

    def attempt():  # errors come back as values: raised inside the task group they would arrive wrapped
        try:
            return work(cancel), None
        except Exception as err:  # noqa: BLE001 - re-raised below
            return None, err

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        try:
            value, err = await run_in_threadpool(attempt)
        finally:
            tasks.cancel_scope.cancel()
    if err is not None:
        raise err
    return value
