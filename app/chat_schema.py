"""The OpenAI-compatible API's wire format: pydantic models of what a client sends and what it
gets back (as vLLM's `entrypoints/openai/protocol.py` keeps them, apart from the routes).

Requests are validated strictly: a string where an object belongs, a number where text belongs,
is refused with a 400 that names the field (app/api_errors.py), never coerced. A chat request's
field this server does not know is refused by name too; inside nested objects (an image's
`detail`, say) unknown fields are ignored, as OpenAI's own server ignores them."""

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


class VideoURL(Lenient):
    url: str  # a data: URI (data:video/mp4;base64,…); this server never fetches URLs


class VideoContent(Lenient):
    """vLLM's name for a video part: its frames, its sound and their timestamps go to the model."""

    type: Literal["video_url"]
    video_url: VideoURL


CONTENT_TYPES = ("text", "image_url", "input_audio", "video_url")
ContentPart = Annotated[Union[TextContent, ImageContent, AudioContent, VideoContent], Field(discriminator="type")]


class FunctionCall(Lenient):
    name: str
    arguments: str  # a JSON object, as text (OpenAI's form)


class ToolCall(Lenient):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Lenient):
    role: str  # checked by the engine (engine/request.py), whose message names the message
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant's earlier calls
    tool_call_id: str | None = None  # a tool message: the call it answers
    name: str | None = None


class FunctionDefinition(Lenient):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict | None = None  # a JSON schema of the arguments object
    strict: bool | None = None


class Tool(Lenient):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Lenient):
    name: str


class NamedToolChoice(Lenient):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(Lenient):
    name: str = "response"
    description: str | None = None
    json_schema: dict = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ProcessorOptions(Lenient):
    dynamic_hd: int | None = None  # the crop budget per image (1-64)


class StreamOptions(Lenient):
    include_usage: bool = False


class ChatCompletionRequest(Lenient):
    """A field this server does not know is refused by name (400), never ignored in silence;
    only OpenAI's bookkeeping fields below are accepted and unused."""

    model_config = ConfigDict(strict=True, extra="forbid")

    messages: list[ChatMessage]
    model: str | None = None  # the served name, or "vision"/"speech" to force that adapter
    max_completion_tokens: int | None = None
    max_tokens: int | None = None  # the older name; max_completion_tokens wins when both are set
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # vLLM's extension
    min_p: float | None = None  # vLLM's extension
    stop_token_ids: list[int] | None = None  # vLLM's extension: refused with a reason (app/chat_request.py)
    repetition_penalty: float | None = None  # vLLM's extension
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=8)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # the model may always answer with several calls
    response_format: ResponseFormat | None = None
    mm_processor_kwargs: ProcessorOptions | None = None  # vLLM's extension
    user: str | None = None  # bookkeeping: accepted, unused
    metadata: dict | None = None
    store: bool | None = None
    service_tier: str | None = None


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # kept from an earlier request (engine/prefix_cache.py), not computed again


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = PromptTokensDetails()


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]  # the token's UTF-8 bytes (a token may hold part of a character)


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob]


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str | None  # stop | length | tool_calls | content_filter | cancelled
    logprobs: ChoiceLogprobs | None = None


# OpenAI's name for the serving configuration an answer came from; one server, one configuration
SYSTEM_FINGERPRINT = "fp_phi4mm"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[Choice]
    usage: Usage


class FunctionCallDelta(BaseModel):
    name: str | None = None  # on a call's first delta only
    arguments: str  # the next piece of the arguments' JSON text


class ToolCallDelta(BaseModel):
    """A call's first delta carries its id, type and name; the next ones only argument pieces."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
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
    language: str | None = None  # verbose_json only
    duration: float | None = None  # verbose_json only
    segments: list[Segment] | None = None  # verbose_json only
