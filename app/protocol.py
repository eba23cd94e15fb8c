"""The OpenAI-compatible API's wire format: pydantic models of what a client sends and what it
gets back (as vLLM's `entrypoints/openai/protocol.py` keeps them, apart from the routes).

Requests are validated strictly: a string where an object belongs, a number where text belongs,
is refused with a 400 that names the field (app/api_errors.py), never coerced. Fields a client
may send that we do not use (`n`, `user`, `logprobs` …) are accepted and ignored, as OpenAI's
own server ignores what it does not know."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    """Strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class TextContent(Lenient):
    type: Literal["text"]
    text: str


class ImageURL(Lenient):
    url: str  # a data: URI; this server never fetches URLs
    detail: str | None = None  # accepted for compatibility; the crop budget is `max_crops`


class ImageContent(Lenient):
    type: Literal["image_url"]
    image_url: ImageURL


class InputAudio(Lenient):
    data: str  # base64 of the file's bytes
    format: str | None = None  # "wav", "mp3" …; the file is sniffed by content anyway


class AudioContent(Lenient):
    type: Literal["input_audio"]
    input_audio: InputAudio


CONTENT_TYPES = ("text", "image_url", "input_audio")
ContentPart = Annotated[Union[TextContent, ImageContent, AudioContent], Field(discriminator="type")]


class ChatMessage(Lenient):
    role: str  # checked by the engine (engine/request.py), whose message names the message
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(Lenient):
    messages: list[ChatMessage]
    model: str | None = None  # one model is served; its name is echoed back
    max_completion_tokens: int | None = None
    max_tokens: int | None = None  # the older name; max_completion_tokens wins when both are set
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # vLLM's extension
    repetition_penalty: float | None = None  # vLLM's extension
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None  # stop | length | content_filter | cancelled


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ErrorDetail(BaseModel):
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "phi4mm"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Segment(BaseModel):
    id: int
    start: float
    end: float
    text: str


class Transcription(BaseModel):
    text: str
    duration: float | None = None  # verbose_json only
    segments: list[Segment] | None = None  # verbose_json only
