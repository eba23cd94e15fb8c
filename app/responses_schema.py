"""The Responses API's wire format (`POST /v1/responses`), as openai-agents and pydantic-ai send
it: input items (messages with input_text/input_image/input_audio parts, function calls and their
outputs), function tools, `text.format`, and the response object with its output items.

Like a chat request, a field this server does not know is refused by name (400); OpenAI's
bookkeeping fields below are accepted and unused. Inside items, unknown fields (an item's `id`,
`status`) are ignored, as a client sends back the items it was given."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from app.chat_schema import InputAudio, Lenient


class InputText(Lenient):
    type: Literal["input_text"]
    text: str


class InputImage(Lenient):
    type: Literal["input_image"]
    image_url: str | None = None  # a data: URI; this server never fetches URLs
    file_id: str | None = None  # refused with a message: there is no Files API here
    detail: str | None = None


class InputAudioPart(Lenient):
    type: Literal["input_audio"]
    input_audio: InputAudio


class OutputTextPart(Lenient):
    """An earlier answer's text, sent back in the conversation."""

    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = []
    logprobs: list = []


class RefusalPart(Lenient):
    type: Literal["refusal"]
    refusal: str


InputContent = Annotated[
    Union[InputText, InputImage, InputAudioPart, OutputTextPart, RefusalPart], Field(discriminator="type")
]


class MessageItem(Lenient):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContent]


class FunctionCallItem(Lenient):
    """A call the model made (an output item, and an input item when sent back)."""

    type: Literal["function_call"] = "function_call"
    id: str | None = None
    call_id: str
    name: str
    arguments: str  # a JSON object, as text
    status: str | None = None


class FunctionCallOutputItem(Lenient):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[InputContent]


class ReasoningItem(Lenient):
    """A reasoning item an agent library sends back from an earlier turn of a reasoning model.
    This model has no reasoning to continue: accepted, and left out of the conversation."""

    type: Literal["reasoning"]


def _item_type(value):
    """An item without `type` is a message ({"role", "content"}, OpenAI's easy input form); any
    other type is its own tag, and one this server does not know is refused naming it."""
    return value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "message")


ITEM_TYPES = "message, function_call, function_call_output and reasoning"
InputItem = Annotated[
    Union[
        Annotated[MessageItem, Tag("message")],
        Annotated[FunctionCallItem, Tag("function_call")],
        Annotated[FunctionCallOutputItem, Tag("function_call_output")],
        Annotated[ReasoningItem, Tag("reasoning")],
    ],
    # app/api_errors.py names the item's type in the message
    Discriminator(_item_type, custom_error_type="unsupported_item", custom_error_message=f"use {ITEM_TYPES} items"),
]


class FunctionTool(Lenient):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict | None = None
    strict: bool | None = None


class NamedFunctionChoice(Lenient):
    type: Literal["function"]
    name: str


class TextFormat(Lenient):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    json_schema: dict | None = Field(None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(Lenient):
    format: TextFormat | None = None
    verbosity: str | None = None  # accepted, unused


class ResponsesRequest(Lenient):
    model_config = ConfigDict(strict=True, extra="forbid")

    input: str | list[InputItem]
    model: str | None = None  # the served name, or "vision"/"speech" to force that adapter
    instructions: str | None = None  # a system message first; not carried to a later response
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stream: bool = False
    previous_response_id: str | None = None  # a response this server kept (store), continued
    store: bool = True  # keep this response for a later previous_response_id
    metadata: dict | None = None
    user: str | None = None  # bookkeeping: accepted, unused
    include: list[str] | None = None
    truncation: str | None = None
    reasoning: dict | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputTextPart]


OutputItem = Annotated[Union[OutputMessage, FunctionCallItem], Field(discriminator="type")]


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete"]
    model: str
    output: list[OutputItem] = []
    usage: ResponseUsage | None = None
    incomplete_details: IncompleteDetails | None = None
    error: None = None
    instructions: str | None = None
    tools: list[FunctionTool] = []
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    store: bool = True
    text: TextConfig = TextConfig(format=TextFormat(type="text"))
    metadata: dict = {}


class DeletedResponse(BaseModel):
    """`DELETE /v1/responses/{id}`'s answer."""

    id: str
    object: Literal["response"] = "response"
    deleted: Literal[True] = True
