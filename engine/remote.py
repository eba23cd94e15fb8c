"""The `openai` backend: the same surface as `engine.Engine` (stream, generate, adapters,
counters) over a remote OpenAI-compatible server: a vLLM cluster serving Phi-4-multimodal with
its LoRAs, or another `phi4mm serve`. The app keeps its UI, prompts and safety; only the
forward passes move.

The adapter is chosen here with the same rule as the local router and named as the request's
`model` (vLLM's `--lora-modules speech=… vision=…` serves each LoRA under its own name; a
`phi4mm serve` routes by the media itself and ignores the name)."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Iterator

import openai
import soundfile as sf

from core.errors import InvalidRequest, ModelUnavailable, Overloaded, Phi4mmError
from core.settings import REMOTE_INFLIGHT
from engine.chat_engine import ChatEngine, OpenStream
from engine.counters import EngineCounters
from engine.model_family import adapter_names
from engine.prompt_items import prompt_items
from engine.request import Chunk, GenerationRequest
from engine.router import BASE, choose_adapter
from media.limits import SAMPLE_RATE, MediaLimits


def image_url(image) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # lossless: text in screenshots must survive the trip
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": url}}


def input_audio(samples) -> dict:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": "wav"},
    }


def openai_messages(request: GenerationRequest) -> list[dict]:
    """Typed messages -> OpenAI chat messages with media inline, by the walk the local engine's
    prompt is built from (a video: its frames, its soundtrack, its note)."""
    encode = {"text": lambda text: {"type": "text", "text": text}, "image": image_url, "audio": input_audio}
    return [
        {"role": message.role, "content": [encode[kind](item) for kind, item in prompt_items(message.parts)]}
        for message in request.messages
    ]


def translate_error(err: openai.OpenAIError, base_url: str) -> Phi4mmError:
    """The remote server's refusal, in our own error types (so the API answers with the right code)."""
    if isinstance(err, openai.APIConnectionError):  # includes timeouts
        return ModelUnavailable(f"The remote engine at {base_url} cannot be reached; is it running?")
    if isinstance(err, openai.AuthenticationError):
        return ModelUnavailable(f"The remote engine at {base_url} refused our key; set --remote-api-key.")
    if isinstance(err, openai.RateLimitError):
        retry = err.response.headers.get("retry-after", "1")
        return Overloaded("The remote engine is busy; retry shortly.", int(retry) if retry.isdigit() else 1)
    body = err.body if isinstance(err.body, dict) else {}
    message = body.get("message") or str(err)
    if isinstance(err, openai.APIStatusError) and err.status_code < 500:
        return InvalidRequest(message, param=body.get("param"))
    return Phi4mmError(f"The remote engine failed: {message}")


class RemoteEngine(ChatEngine):
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        limits: MediaLimits = MediaLimits(),
        timeout_s: float = 600.0,
        concurrency: int = REMOTE_INFLIGHT,
    ):
        # no client-side retries: a refusal (busy, bad input) goes straight back to our caller
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout_s, max_retries=0)
        self.base_url = base_url
        self.model = model  # the base model's name on the remote server
        self.limits = limits
        self.device = f"remote {base_url}"
        self.adapters = adapter_names()  # the table's: what the remote loaded is not ours to see
        self.concurrency = concurrency  # requests worth having in flight at once: Settings.inflight()
        self.decode_mode, self.decode_fallback = "remote", None  # the remote server's own choice
        self._base_model: str | None = None  # the remote's name for it, asked once (base_model)
        self.counters = EngineCounters()  # finish reasons and tokens, as the local engine counts them

    def base_model(self) -> str:
        """The remote's name for the base model: ours when it serves that name, else the first it
        lists (vLLM lists its base model before its LoRA modules; a phi4mm server likewise)."""
        if self._base_model is None:
            try:
                names = [m.id for m in self.client.models.list().data]
            except openai.OpenAIError as err:
                raise translate_error(err, self.base_url) from None
            self._base_model = self.model if self.model in names or not names else names[0]
        return self._base_model

    def stream(self, request: GenerationRequest) -> Iterator[Chunk]:
        """The chunks of the answer. A refusal (ours, or the remote's 4xx) raises on the call.
        Tools and a JSON schema go to the remote as OpenAI fields (vLLM has its own tool parsers
        and grammars); its tool calls come back as the `functools[…]` text our own engine writes."""
        started = time.perf_counter()
        request.validate()
        adapter = request.adapter or choose_adapter(request.messages)
        params = request.params
        extra = {}
        if params.top_k:
            extra["top_k"] = params.top_k
        if request.prefill:  # vLLM's names for continuing the last (assistant) message
            extra.update(continue_final_message=True, add_generation_prompt=False)
        if params.min_p:
            extra["min_p"] = params.min_p
        if params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty
        if request.max_crops:
            extra["mm_processor_kwargs"] = {"dynamic_hd": request.max_crops}
        shape = _openai_shape(request)
        try:
            response = self.client.chat.completions.create(
                model=self.base_model() if adapter == BASE else adapter,
                messages=openai_messages(request),
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                presence_penalty=params.presence_penalty or None,
                frequency_penalty=params.frequency_penalty or None,
                seed=params.seed,
                stop=list(params.stop) or None,
                stream=True,
                stream_options={"include_usage": True},
                extra_body=extra or None,
                **shape,
            )
        except openai.OpenAIError as err:
            raise translate_error(err, self.base_url) from None
        return OpenStream(self._chunks(request, response, adapter, started), response)  # open from here

    def _chunks(self, request, response, adapter: str, started: float) -> Iterator[Chunk]:
        first_token_at, usage, finish, pieces, calls = None, None, None, 0, {}
        try:
            for event in response:
                if request.cancel.is_set():
                    finish = "cancelled"
                    break
                usage = event.usage or usage
                for choice in event.choices:
                    if choice.delta and choice.delta.content:
                        first_token_at = first_token_at or time.perf_counter()
                        pieces += 1
                        yield Chunk(choice.delta.content, [], adapter)
                    for call in (choice.delta.tool_calls or []) if choice.delta else []:
                        first_token_at = first_token_at or time.perf_counter()
                        entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                        entry["name"] += (call.function and call.function.name) or ""
                        entry["arguments"] += (call.function and call.function.arguments) or ""
                    finish = choice.finish_reason or finish
        except GeneratorExit:  # the consumer closed the stream (Stop, a dropped client)
            self.counters.finish("cancelled")
            raise
        except openai.OpenAIError as err:
            raise translate_error(err, self.base_url) from None
        finally:
            response.close()  # hangs up on the remote server, which cancels its generation
        completion = usage.completion_tokens if usage else pieces
        self.counters.add_tokens(completion)
        text = ""
        if calls:  # as our own engine writes calls (app/tool_calls.py reads them back)
            text = "functools" + json.dumps(
                [{"name": c["name"], "arguments": _json_or_text(c["arguments"])} for _, c in sorted(calls.items())]
            )
            finish = "stop"
        yield self.last_chunk(
            text,
            [],
            adapter,
            finish or "stop",
            usage.prompt_tokens if usage else 0,
            completion,
            started,
            first_token_at,
            _cached_tokens(usage),
        )

    def close(self) -> None:
        """Nothing runs here to stop: each open stream hangs up on the remote when it closes."""


def _openai_shape(request: GenerationRequest) -> dict:
    """The request's tools and format as OpenAI's fields, as the chat path decided them (request.py:
    a forced call until the tools have answered, then the format; on auto, a call or the format)."""
    shape, schema = {}, request.answer_schema
    if request.tools:
        shape["tools"] = [{"type": "function", "function": tool} for tool in json.loads(request.tools)]
        choice = request.tool_choice
        named = choice not in ("auto", "required", "none")
        shape["tool_choice"] = {"type": "function", "function": {"name": choice}} if named else choice
        shape["parallel_tool_calls"] = request.parallel_tool_calls
    grammar = request.params.grammar
    if schema is None and not request.tools and grammar and grammar.kind == "json_schema":
        # a schema the app itself set (meeting notes): the grammar is all there is
        schema = {k: v for k, v in json.loads(grammar.source).items() if k != "x-guidance"}
    if schema is not None:
        shape["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    return shape


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _cached_tokens(usage) -> int:
    """The remote's prompt tokens served from its prefix cache (vLLM reports them), else 0."""
    details = getattr(usage, "prompt_tokens_details", None)
    return getattr(details, "cached_tokens", None) or 0
