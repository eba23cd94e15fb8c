"""Whisper's API over the speech adapter:

    POST /v1/audio/transcriptions   multipart `file`; response_format json/text/srt/vtt/verbose_json;
                                    stream=true -> transcript.text.delta events, then transcript.text.done
    POST /v1/audio/translations     the same file's speech in English (the model's translation prompt)

The transcript is made of ~30 s segments cut at quiet points (app/meeting.py), each asked of the
model on its own; the options and formats are app/transcription.py's. Registered beside the chat
routes (app/server.py), with the same admission, cancelling and error handling (app/api.py)."""

from __future__ import annotations

import io
import threading

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api import ADAPTER_HEADER, until_disconnect
from app.api_errors import APIError, TooLarge
from app.chat_schema import Segment, Transcription
from app.meeting import MeetingResult, MeetingSummarizer, Tracker
from app.metrics import ServerMetrics
from app.openapi import documented
from app.service import ConversationService
from app.sse_stream import EventStream, Handoff
from app.transcription import TranscriptionOptions, check_model, spoken_language, transcript_events, vtt
from core.errors import Phi4mmError
from core.settings import Settings
from engine.model_family import adapter_for
from engine.router import BASE
from media.audio_stream import checked, decode_to_16k
from media.files import read_bytes
from media.limits import SAMPLE_RATE, MediaLimits

TEXT_FORMATS = {"text": "text/plain", "srt": "text/plain", "vtt": "text/vtt"}


def build_audio_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter(prefix="/v1/audio")
    headers = {ADAPTER_HEADER: adapter_for({"audio"}) or BASE}  # the adapter a recording selects

    max_body = settings.max_upload_mb * 2**20
    limits = MediaLimits.from_settings(settings)

    @router.post("/transcriptions", **documented(Transcription, TEXT_FORMATS, streams=True))
    async def transcriptions(
        request: Request,
        file: UploadFile = File(...),
        model: str | None = Form(None),
        response_format: str = Form("json"),
        language: str | None = Form(None),
        prompt: str | None = Form(None),
        temperature: float = Form(0.0),
        granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
        stream: bool = Form(False),
    ):
        check_model(model, settings)
        options = TranscriptionOptions.checked(
            response_format, language, prompt, temperature, granularities, stream=stream
        )
        return metrics.answered("transcriptions", await _answer(request, file, options))

    @router.post("/translations", **documented(Transcription, TEXT_FORMATS, streams=True))
    async def translations(
        request: Request,
        file: UploadFile = File(...),
        model: str | None = Form(None),
        response_format: str = Form("json"),
        prompt: str | None = Form(None),
        temperature: float = Form(0.0),
        stream: bool = Form(False),  # as the transcription route's (OpenAI's translations do not stream)
    ):
        check_model(model, settings)
        options = TranscriptionOptions.checked(
            response_format, None, prompt, temperature, None, translate=True, stream=stream
        )
        return metrics.answered("translations", await _answer(request, file, options))

    def samples_of(file: UploadFile):
        data = file.file.read(max_body + 1)
        if len(data) > max_body:
            raise TooLarge(f"The file is over {settings.max_upload_mb} MB.")
        seconds = limits.max_task_audio_seconds
        return checked(decode_to_16k(io.BytesIO(read_bytes(data, limits, "audio")), seconds), seconds)

    async def _answer(request: Request, file: UploadFile, options: TranscriptionOptions):
        if options.stream:
            return await _stream(file, options)
        verbose = options.response_format == "verbose_json"

        def run(cancel: threading.Event):
            samples = samples_of(file)
            segments, notes = MeetingSummarizer(service).transcribe(
                samples, options.meeting_options(), Tracker(1, lambda *_: None), cancel
            )
            language = "english" if options.translate else options.language.lower() if options.language else None
            if verbose and language is None:
                language = spoken_language(service, samples, cancel)
            return samples, segments, notes, language

        try:
            with admission.enter():  # before decoding: the slots bound the decoded audio's memory too
                samples, segments, notes, language = await until_disconnect(request, run)
        except Phi4mmError as err:
            raise APIError(err, headers, param="file") from None
        result = MeetingResult("single", len(samples) / SAMPLE_RATE, segments, "", "text", notes)
        text = " ".join(s.text for s in segments if s.text)
        if options.response_format in TEXT_FORMATS:
            body = {"text": text, "srt": result.transcript_srt(), "vtt": vtt(segments)}[options.response_format]
            return PlainTextResponse(body, media_type=TEXT_FORMATS[options.response_format], headers=headers)
        body = Transcription(text=text)
        if verbose:
            body.language, body.duration = language, result.duration
            body.segments = [Segment(id=i, start=s.start, end=s.end, text=s.text) for i, s in enumerate(segments)]
        return JSONResponse(body.model_dump(exclude_none=True), headers=headers)

    async def _stream(file: UploadFile, options: TranscriptionOptions):
        ticket = admission.enter()
        try:
            samples = await run_in_threadpool(samples_of, file)
        except Phi4mmError as err:
            ticket.release()
            raise APIError(err, headers, param="file") from None
        except BaseException:
            ticket.release()
            raise
        # the file is checked above, before the 200; its segments are asked of the model one after
        # another, each prepared in a worker thread borrowed for that alone (app/sse_stream.py)
        cancel, handoff = threading.Event(), Handoff(service.engine.pushes)
        handoff.start(transcript_events(service, samples, options, cancel, handoff.on_token()))
        return EventStream(handoff, ticket, cancel, headers)

    return router
