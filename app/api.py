"""OpenAI-compatible HTTP API (`/v1`), served beside the browser app, through the same
conversation service (so the safety mitigations and the output guard apply).

    POST /v1/chat/completions       text, image_url (data: URIs only), input_audio; stream: true -> SSE
    GET  /v1/models, /v1/models/{id}
    (the audio routes are app/audio_api.py's, /v1/responses app/responses_api.py's)

The wire format is app/protocol.py's models; errors are raised here and answered by the one
handler in app/api_errors.py with OpenAI's body: 400 bad input (422 a body that is no JSON
object), 401 bad key and 413 too large (both from the headers, in app/gate.py), 429 +
Retry-After when every slot and queue place is taken, 500 when generating failed, 503 when a
remote engine cannot be reached or the server is stopping. Media URLs are never fetched (no
server-side request forgery): send a data: URI.

A request is admitted before its media is decoded, so the slots bound that memory too, and a
client that goes away (streaming or not) cancels its generation and frees its slot at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api_errors import APIError, ModelNotFound, TooLarge, error_body
from app.chat_request import (
    ADAPTER_MODELS,
    ChatPlan,
    choice,
    openai_logprobs,
    plan,
    read_request,
    to_messages,
    usage,
)
from app.metrics import ServerMetrics
from app.openapi import documented
from app.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Delta,
    Model,
    ModelList,
    ToolCallDelta,
)
from app.service import ConversationService
from app.tool_calls import could_be_call
from core.errors import InvalidRequest, Phi4mmError
from core.settings import Settings
from engine.request import Metrics

log = logging.getLogger(__name__)
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

    def answered(endpoint: str, response):
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    names = [settings.served_name(), *ADAPTER_MODELS]  # as vLLM lists a base model and its LoRAs

    @router.get("/models", **documented(ModelList))
    def models(request: Request):
        return answered("models", JSONResponse(ModelList(data=[Model(id=name) for name in names]).model_dump()))

    @router.get("/models/{model_id:path}", **documented(Model))  # :path: a hub id has a slash
    def model(model_id: str):
        if model_id not in names:
            raise ModelNotFound(f"The model {model_id!r} does not exist here.")
        return answered("models", JSONResponse(Model(id=model_id).model_dump()))

    @router.post("/chat/completions", **documented(ChatCompletion, streams=True, request=ChatCompletionRequest))
    async def chat_completions(request: Request):
        return answered("chat", await _chat(request))

    async def _chat(request: Request):
        raw = await request.body()
        if len(raw) > max_body:
            raise TooLarge(f"The request body is over {settings.max_upload_mb} MB.")
        body = read_request(raw)
        chat_plan = plan(body, settings)
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
            cancel = threading.Event()
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = _sse(service, messages, chat_plan, template, cancel, include_usage)
            return ClosingStreamingResponse(
                _until_disconnect(events, ticket, cancel), media_type="text/event-stream", headers=headers
            )

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
        return JSONResponse(answer.model_dump(exclude_none=True), headers=headers)

    return router


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse that always closes its body iterator. When the client goes away while
    Starlette is sending a chunk, the sending task is cancelled there and the iterator is left
    suspended at its `yield`: its `finally` (which frees the slot) then ran only whenever the
    garbage collector got to it, and sometimes not for minutes."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()


async def until_disconnect(request: Request, work):
    """Runs `work(cancel)` in a worker thread; if the client goes away before it is done, `cancel`
    is set, so a non-streaming request stops generating for nobody."""
    cancel = threading.Event()

    async def watch():
        while not await request.is_disconnected():
            await anyio.sleep(0.25)
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


async def _until_disconnect(events: Iterator[str], ticket, cancel: threading.Event):
    """Runs the blocking event stream off the event loop. When the client goes away, Starlette
    cancels this mid-await. Nothing in `finally` may await then (an await in a cancelled scope is
    cancelled again, so the slot would never be given back): it sets `cancel`, which ends the
    generation at its next step, gives the slot back at once, and closes the stream in a thread
    once the step that is still running returns."""
    done, turn = object(), threading.Lock()

    def step():
        with turn:
            return next(events, done)

    def close():
        with turn:
            events.close()

    try:
        while (event := await anyio.to_thread.run_sync(step, abandon_on_cancel=True)) is not done:
            yield event
    finally:
        cancel.set()
        ticket.release()
        threading.Thread(target=close, name="close-stream", daemon=True).start()


def _sse(
    service, messages, chat_plan: ChatPlan, template: ChatCompletionChunk, cancel: threading.Event, include_usage: bool
) -> Iterator[str]:
    """The answer as server-sent events, each a chunk like `template`, then (with
    `stream_options.include_usage`) one chunk with empty `choices` and the usage, as OpenAI sends
    it. With tools offered, text that may still become a call is held back; a well-formed call
    goes out as one `tool_calls` delta, anything else as text. Whatever fails after the response
    has started (it cannot become an error status any more) ends the stream with an error event
    and `[DONE]`; a guard refusal cannot retract streamed text, so it arrives as the last delta
    with finish_reason content_filter."""

    def event(delta: Delta | None, finish: str | None = None, metrics: Metrics | None = None, logprobs=None) -> str:
        body = template.model_dump(exclude={"usage", "choices"})
        body["choices"] = (
            []
            if delta is None
            else [{"index": 0, "delta": delta.model_dump(exclude_none=True), "finish_reason": finish}]
        )
        if logprobs := openai_logprobs(logprobs):
            body["choices"][0]["logprobs"] = logprobs.model_dump()
        if metrics:
            body["usage"] = usage([metrics]).model_dump()
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield event(Delta(role="assistant", content=""))
        held, final = "", None  # held: text that may still turn out to be a tool call
        for reply in service.chat(messages, chat_plan.params[0], cancel=cancel, **chat_plan.options()):
            if reply.finish_reason:  # its text joins what is held, below
                final = reply
                break
            text = reply.text
            if chat_plan.tools and (held or could_be_call(text)):
                held += text
                text, held = ("", held) if could_be_call(held) else (held, "")
            if text:
                yield event(Delta(content=text), logprobs=reply.logprobs)
        if final is not None:
            text = final.text if final.replace else held + final.text  # a guard refusal replaces it all
            answer = choice(0, text, final, chat_plan.tools)
            if answer.message.tool_calls:
                calls = [
                    ToolCallDelta(index=i, id=c.id, function=c.function)
                    for i, c in enumerate(answer.message.tool_calls)
                ]
                yield event(Delta(tool_calls=calls), "tool_calls")
            else:
                yield event(Delta(content=text or None), final.finish_reason, logprobs=final.logprobs)
            if include_usage:
                yield event(None, metrics=final.metrics)
    except Exception as err:  # noqa: BLE001 - the stream's last word, whatever went wrong
        if isinstance(err, Phi4mmError):
            kind = "invalid_request_error" if isinstance(err, InvalidRequest) else "server_error"
            body = error_body(str(err), kind)
        else:
            log.error("an answer failed while streaming", exc_info=err)
            body = error_body("Generating this answer failed on the server.", "server_error")
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
