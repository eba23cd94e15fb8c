"""OpenAI-compatible HTTP API (`/v1`), served beside the browser app, through the same
conversation service (so the safety mitigations and the output guard apply).

    POST /v1/chat/completions       text, image_url (data: URIs only), input_audio; stream: true -> SSE
    POST /v1/audio/transcriptions   multipart `file`, Whisper-compatible; response_format json/text/srt
    GET  /v1/models

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

import base64
import binascii
import io
import json
import logging
import threading
import time
import uuid
from typing import Iterator

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic_core import from_json
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api_errors import APIError, NotAJsonObject, TooLarge, error_body
from app.metrics import ServerMetrics
from app.protocol import (
    AssistantMessage,
    AudioContent,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Choice,
    ChunkChoice,
    Delta,
    ImageContent,
    Model,
    ModelList,
    Segment,
    Transcription,
    Usage,
)
from app.service import ConversationService
from core.errors import InvalidRequest, Phi4mmError
from core.settings import Settings
from engine.request import Metrics, SamplingParams
from media.audio_stream import checked, decode_to_16k
from media.files import read_bytes
from media.limits import SAMPLE_RATE, MediaLimits
from media.parts import Message
from media.payloads import parse_messages

log = logging.getLogger(__name__)
ADAPTER_HEADER = "X-Phi4mm-Adapter"
# The API's routes by their label in /metrics (app/gate.py counts what it refuses under these too).
ENDPOINTS = {"/v1/models": "models", "/v1/chat/completions": "chat", "/v1/audio/transcriptions": "transcriptions"}


def _data_uri(url: str, param: str) -> bytes:
    if not url.startswith("data:"):
        raise InvalidRequest(
            "Only data: URIs are accepted; this server never fetches URLs. Send the file as data:<mime>;base64,<data>.",
            param=param,
        )
    try:
        header, payload = url.split(",", 1)
        return base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
    except (ValueError, binascii.Error):
        raise InvalidRequest("The data: URI is not valid base64.", param=param) from None


def engine_part(part, where: str) -> dict:
    """An OpenAI content part -> the engine's own part dict (decoded by media.payloads.parse_part)."""
    if isinstance(part, ImageContent):
        return {"type": "image", "image": _data_uri(part.image_url.url, where)}
    if isinstance(part, AudioContent):
        try:
            return {"type": "audio", "audio": base64.b64decode(part.input_audio.data, validate=True)}
        except (ValueError, binascii.Error):
            raise InvalidRequest("input_audio.data must be base64.", param=where) from None
    return {"type": "text", "text": part.text}


def to_messages(raw: list[ChatMessage], settings: Settings) -> list[Message]:
    """The request's messages -> typed messages, media decoded (CPU work: run off the event loop)."""
    if not raw:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    content = [
        message.content or ""
        if isinstance(message.content, (str, type(None)))
        else [engine_part(part, f"messages[{i}].content[{j}]") for j, part in enumerate(message.content)]
        for i, message in enumerate(raw)
    ]
    return parse_messages(
        [{"role": message.role, "content": parts} for message, parts in zip(raw, content)],
        MediaLimits.from_settings(settings),
    )


def sampling(body: ChatCompletionRequest, settings: Settings) -> SamplingParams:
    """What the body sets (0 counts as set: it is refused, not replaced); the rest are the defaults."""
    given = {
        "max_new_tokens": next(
            (n for n in (body.max_completion_tokens, body.max_tokens) if n is not None), settings.max_new_tokens
        ),
        "temperature": body.temperature,
        "top_p": body.top_p,
        "top_k": body.top_k,
        "repetition_penalty": body.repetition_penalty,
        "seed": body.seed,
        "stop": (body.stop,) if isinstance(body.stop, str) else tuple(body.stop) if body.stop else None,
    }
    return SamplingParams(**{name: value for name, value in given.items() if value is not None})


def read_request(raw: bytes) -> ChatCompletionRequest:
    """The body -> the protocol model. pydantic's JSON parser stops at 200 levels of nesting, so a
    100,000-deep object is refused at once (400) instead of taking the stack json.loads needs; what
    is not a JSON object at all is refused as unreadable (422)."""
    try:
        parsed = from_json(raw)
    except ValueError as err:
        if "recursion limit" in str(err) and raw.lstrip()[:1] == b"{":
            raise InvalidRequest("The JSON body is nested too deeply (over 200 levels).") from None
        parsed = None
    if not isinstance(parsed, dict):
        raise NotAJsonObject()
    return ChatCompletionRequest.model_validate(parsed)


def usage(metrics: Metrics | None) -> Usage:
    prompt, completion = (metrics.prompt_tokens, metrics.completion_tokens) if metrics else (0, 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def build_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    max_body = settings.max_upload_mb * 2**20

    def answered(endpoint: str, response):
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    @router.get("/models")
    def models(request: Request):
        return answered("models", JSONResponse(ModelList(data=[Model(id=settings.model)]).model_dump()))

    @router.post("/audio/transcriptions")
    async def transcriptions(
        request: Request,
        file: UploadFile = File(...),
        model: str = Form("phi4mm"),
        response_format: str = Form("json"),
        language: str | None = Form(None),
    ):
        """Whisper-API compatible: the transcript of ~30 s segments cut at quiet points."""
        return answered("transcriptions", await _transcribe(request, file, response_format))

    async def _transcribe(request: Request, file: UploadFile, response_format: str):
        from app.meeting import MeetingOptions, MeetingResult, MeetingSummarizer, Tracker

        if response_format not in ("json", "text", "srt", "verbose_json"):
            raise InvalidRequest("response_format must be json, text, srt or verbose_json.", param="response_format")
        limits = MediaLimits.from_settings(settings)
        data = file.file.read(max_body + 1)
        if len(data) > max_body:
            raise TooLarge(f"The file is over {settings.max_upload_mb} MB.")
        headers = {ADAPTER_HEADER: "speech"}

        def run(cancel: threading.Event):
            seconds = limits.max_task_audio_seconds
            samples = checked(decode_to_16k(io.BytesIO(read_bytes(data, limits, "audio")), seconds), seconds)
            segments, notes = MeetingSummarizer(service).transcribe(
                samples, MeetingOptions(), Tracker(1, lambda *_: None), cancel
            )
            return samples, segments, notes

        try:
            with admission.enter():  # before decoding: the slots bound the decoded audio's memory too
                samples, segments, notes = await until_disconnect(request, run)
        except Phi4mmError as err:
            raise APIError(err, headers, param="file") from None
        result = MeetingResult("single", len(samples) / SAMPLE_RATE, segments, "", "text", notes)
        text = " ".join(s.text for s in segments if s.text)
        if response_format == "text":
            return PlainTextResponse(text, headers=headers)
        if response_format == "srt":
            return PlainTextResponse(result.transcript_srt(), headers=headers)
        body = Transcription(text=text)
        if response_format == "verbose_json":
            body.duration = result.duration
            body.segments = [Segment(id=i, start=s.start, end=s.end, text=s.text) for i, s in enumerate(segments)]
        return JSONResponse(body.model_dump(exclude_none=True), headers=headers)

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        return answered("chat", await _chat(request))

    async def _chat(request: Request):
        raw = await request.body()
        if len(raw) > max_body:
            raise TooLarge(f"The request body is over {settings.max_upload_mb} MB.")
        body = read_request(raw)
        params = sampling(body, settings)
        params.validate()
        ticket = admission.enter()  # before decoding: the slots bound the decoded media's memory too
        try:
            messages = await run_in_threadpool(to_messages, body.messages, settings)
        except BaseException:
            ticket.release()
            raise
        headers = {ADAPTER_HEADER: service.adapter_for(messages)}
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        model = settings.model
        if body.stream:
            cancel = threading.Event()
            events = _sse(
                service,
                messages,
                params,
                ChatCompletionChunk(id=completion_id, created=created, model=model, choices=[]),
                cancel,
            )
            return ClosingStreamingResponse(
                _until_disconnect(events, ticket, cancel), media_type="text/event-stream", headers=headers
            )
        try:
            with ticket:
                text, final = await until_disconnect(
                    request, lambda cancel: service.answer(messages, params, cancel=cancel)
                )
        except Phi4mmError as err:
            raise APIError(err, headers) from None
        answer = ChatCompletion(
            id=completion_id,
            created=created,
            model=model,
            usage=usage(final.metrics),
            choices=[Choice(message=AssistantMessage(content=text), finish_reason=final.finish_reason)],
        )
        return JSONResponse(answer.model_dump(), headers=headers)

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


def _sse(service, messages, params, template: ChatCompletionChunk, cancel: threading.Event) -> Iterator[str]:
    """The answer as server-sent events, each a chunk like `template`. Whatever fails after the
    response has started (it cannot become an error status any more) ends the stream with an
    error event and `[DONE]`; a guard refusal cannot retract streamed text, so it arrives as the
    last delta with finish_reason content_filter."""

    def event(delta: Delta, finish: str | None = None, metrics: Metrics | None = None) -> str:
        chunk = template.model_copy(update={"choices": [ChunkChoice(delta=delta, finish_reason=finish)]})
        body = chunk.model_dump(exclude={"usage"})
        body["choices"][0]["delta"] = delta.model_dump(exclude_none=True)  # only what this chunk adds
        if metrics:
            body["usage"] = usage(metrics).model_dump()
        return f"data: {json.dumps(body)}\n\n"

    try:
        yield event(Delta(role="assistant", content=""))
        for reply in service.chat(messages, params, cancel=cancel):
            yield event(Delta(content=reply.text or None), reply.finish_reason, reply.metrics)
    except Exception as err:  # noqa: BLE001 - the stream's last word, whatever went wrong
        if isinstance(err, Phi4mmError):
            kind = "invalid_request_error" if isinstance(err, InvalidRequest) else "server_error"
            body = error_body(str(err), kind)
        else:
            log.error("an answer failed while streaming", exc_info=err)
            body = error_body("Generating this answer failed on the server.", "server_error")
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
