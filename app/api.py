"""OpenAI-compatible HTTP API (`/v1`), served beside the browser app, through the same
conversation service (so the safety mitigations and the output guard apply).

    POST /v1/chat/completions       text, image_url (data: URIs only), input_audio; stream: true -> SSE
    POST /v1/audio/transcriptions   multipart `file`, Whisper-compatible; response_format json/text/srt
    GET  /v1/models

Errors use OpenAI's body {"error": {"message", "type", "param", "code"}}: 400/422 bad input, 401
bad key and 413 too large (both from the headers, in app/gate.py), 429 + Retry-After when every
slot and queue place is taken, 500 when generating failed, 503 when a remote engine cannot be
reached or the server is stopping. Media URLs are never fetched (no server-side request
forgery): send a data: URI.

A request is admitted before its media is decoded, so the slots bound that memory too, and a
client that goes away (streaming or not) cancels its generation and frees its slot at once.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
import uuid
from typing import Any, Iterator

import anyio
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.metrics import ServerMetrics
from app.service import ConversationService
from core.errors import GenerationFailed, InvalidRequest, ModelUnavailable, Overloaded, Phi4mmError
from core.settings import Settings
from engine.request import SamplingParams
from engine.router import choose_adapter
from media.audio_stream import checked
from media.files import read_bytes
from media.limits import SAMPLE_RATE, MediaLimits
from media.parts import Message
from media.payloads import parse_part

ADAPTER_HEADER = "X-Phi4mm-Adapter"
# The API's routes by their label in /metrics (app/gate.py counts what it refuses under these too).
ENDPOINTS = {"/v1/models": "models", "/v1/chat/completions": "chat", "/v1/audio/transcriptions": "transcriptions"}


def error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def error_for(err: Phi4mmError, headers: dict | None = None, param: str | None = None) -> JSONResponse:
    """Our typed errors -> the HTTP status and OpenAI error body a client expects (`param`
    overrides the error's own, e.g. "file" for any bad upload)."""
    headers = dict(headers or {})
    if isinstance(err, Overloaded):
        headers["Retry-After"] = str(err.retry_after)
        return error(429, str(err), kind="rate_limit_error", code="rate_limit_exceeded", headers=headers)
    if isinstance(err, ModelUnavailable):
        headers["Retry-After"] = "5"
        return error(503, str(err), kind="server_error", code="engine_unavailable", headers=headers)
    if isinstance(err, InvalidRequest):
        return error(400, str(err), param=param or err.param, headers=headers)
    code = "generation_failed" if isinstance(err, GenerationFailed) else None
    return error(500, str(err), kind="server_error", code=code, headers=headers)


def _data_uri(url: str, param: str) -> bytes:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise InvalidRequest(
            "Only data: URIs are accepted; this server never fetches URLs. Send the file as data:<mime>;base64,<data>.",
            param=param,
        )
    try:
        header, payload = url.split(",", 1)
        return base64.b64decode(payload, validate=True) if header.endswith(";base64") else payload.encode()
    except (ValueError, binascii.Error):
        raise InvalidRequest("The data: URI is not valid base64.", param=param) from None


def engine_part(part: Any, where: str) -> dict:
    """An OpenAI content part -> the engine's own part dict (decoded by media.payloads.parse_part)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return {"type": "text", "text": str(part.get("text", ""))}
    if kind == "image_url":
        return {"type": "image", "image": _data_uri((part.get("image_url") or {}).get("url"), where)}
    if kind == "input_audio":
        try:
            return {
                "type": "audio",
                "audio": base64.b64decode((part.get("input_audio") or {}).get("data", ""), validate=True),
            }
        except (ValueError, binascii.Error):
            raise InvalidRequest("input_audio.data must be base64.", param=where) from None
    raise InvalidRequest(f"Unsupported content part type {kind!r}; use text, image_url or input_audio.", param=where)


def parse_messages(raw: Any, settings: Settings) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("`messages` must be a non-empty list.", param="messages")
    limits = MediaLimits.from_settings(settings)
    messages = []
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object.", param="messages")
        content = message.get("content") or ""
        content = [{"type": "text", "text": content}] if isinstance(content, str) else content
        parts = [parse_part(engine_part(part, f"messages[{i}].content[{j}]"), limits) for j, part in enumerate(content)]
        messages.append(Message(str(message.get("role", "")), parts))
    return messages


def first_given(body: dict, *names: str, default: Any = None) -> Any:
    """The first of `names` the body sets (0 counts as set: it is refused, not replaced)."""
    return next((body[n] for n in names if body.get(n) is not None), default)


def sampling(body: dict, settings: Settings) -> SamplingParams:
    stop = body.get("stop") or ()
    return SamplingParams(
        max_new_tokens=first_given(body, "max_completion_tokens", "max_tokens", default=settings.max_new_tokens),
        temperature=body.get("temperature", 0.0) if body.get("temperature") is not None else 0.0,
        top_p=body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0,
        top_k=body.get("top_k", 0) or 0,
        repetition_penalty=body.get("repetition_penalty", 1.0) or 1.0,
        seed=body.get("seed"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
    )


def build_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter(prefix="/v1")
    max_body = settings.max_upload_mb * 2**20

    def answered(endpoint: str, response):
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    def too_large(what: str) -> JSONResponse:
        return error(413, f"The {what} is over {settings.max_upload_mb} MB.", code="request_too_large")

    @router.get("/models")
    def models(request: Request):
        return answered(
            "models",
            JSONResponse(
                {
                    "object": "list",
                    "data": [{"id": settings.model, "object": "model", "created": 0, "owned_by": "phi4mm"}],
                }
            ),
        )

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
        from media.audio_stream import decode_to_16k

        if response_format not in ("json", "text", "srt", "verbose_json"):
            return error(400, "response_format must be json, text, srt or verbose_json.", param="response_format")
        limits = MediaLimits.from_settings(settings)
        data = file.file.read(max_body + 1)
        if len(data) > max_body:
            return too_large("file")
        headers = {ADAPTER_HEADER: "speech"}

        def run(cancel: threading.Event):
            samples = checked(
                decode_to_16k(io.BytesIO(read_bytes(data, limits, "audio")), limits.max_task_audio_seconds),
                limits.max_task_audio_seconds,
            )
            segments, notes = MeetingSummarizer(service).transcribe(
                samples, MeetingOptions(), Tracker(1, lambda *_: None), cancel
            )
            return samples, segments, notes

        try:
            ticket = admission.enter()  # before decoding: the slots bound the decoded audio's memory too
            try:
                samples, segments, notes = await until_disconnect(request, run)
            finally:
                ticket.release()
        except Phi4mmError as err:
            return error_for(err, headers, param="file")
        result = MeetingResult("single", len(samples) / SAMPLE_RATE, segments, "", "text", notes)
        text = " ".join(s.text for s in segments if s.text)
        if response_format == "text":
            return PlainTextResponse(text, headers=headers)
        if response_format == "srt":
            return PlainTextResponse(result.transcript_srt(), headers=headers)
        body = {"text": text}
        if response_format == "verbose_json":
            body.update(
                duration=result.duration,
                segments=[{"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(segments)],
            )
        return JSONResponse(body, headers=headers)

    @router.post("/chat/completions")
    async def chat_completions(request: Request):
        return answered("chat", await _chat(request))

    async def _chat(request: Request):
        raw = await request.body()
        if len(raw) > max_body:
            return too_large("request body")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return error(422, "The body must be a JSON object.")
        try:
            params = sampling(body, settings)
            params.validate()
            ticket = admission.enter()  # before decoding: the slots bound the decoded media's memory too
        except Phi4mmError as err:
            return error_for(err)
        try:  # decoding media is CPU work: off the event loop
            messages = await run_in_threadpool(parse_messages, body.get("messages"), settings)
        except Phi4mmError as err:
            ticket.release()
            return error_for(err)
        adapter = choose_adapter(messages)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        headers = {ADAPTER_HEADER: adapter}
        if body.get("stream"):
            cancel = threading.Event()
            events = _sse(service, messages, params, completion_id, created, settings.model, cancel)
            return ClosingStreamingResponse(
                _until_disconnect(events, ticket, cancel), media_type="text/event-stream", headers=headers
            )
        try:
            text, final = await until_disconnect(
                request, lambda cancel: service.answer(messages, params, cancel=cancel)
            )
        except Phi4mmError as err:
            return error_for(err, headers)
        finally:
            ticket.release()
        m = final.metrics
        usage = {"prompt_tokens": m.prompt_tokens if m else 0, "completion_tokens": m.completion_tokens if m else 0}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return JSONResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": settings.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": final.finish_reason,
                    }
                ],
                "usage": usage,
            },
            headers=headers,
        )

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
    service, messages, params, completion_id: str, created: int, model: str, cancel: threading.Event
) -> Iterator[str]:
    def event(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
        chunk = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage:
            chunk["usage"] = usage
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""})
    try:
        for reply in service.chat(messages, params, cancel=cancel):
            usage = None
            if reply.metrics:
                usage = {
                    "prompt_tokens": reply.metrics.prompt_tokens,
                    "completion_tokens": reply.metrics.completion_tokens,
                    "total_tokens": reply.metrics.prompt_tokens + reply.metrics.completion_tokens,
                }
            # a guard refusal cannot retract streamed text: it arrives as the last delta, finish_reason content_filter
            yield event({"content": reply.text} if reply.text else {}, reply.finish_reason, usage)
    except Exception as err:  # after streaming started: an error event, and the server keeps serving
        kind = "invalid_request_error" if isinstance(err, InvalidRequest) else "server_error"
        message = str(err) if isinstance(err, Phi4mmError) else "Generating this answer failed on the server."
        yield f"data: {json.dumps({'error': {'message': message, 'type': kind, 'param': None, 'code': None}})}\n\n"
    yield "data: [DONE]\n\n"
