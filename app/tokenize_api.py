"""`POST /tokenize` and `POST /detokenize`, as vLLM serves them beside its OpenAI routes:

    /tokenize    {model?, prompt} or {model?, messages} -> {count, max_model_len, tokens[, token_strs]}
    /detokenize  {model?, tokens}                       -> {prompt}

A conversation's tokens are the prompt the model would read for it: the server's system turn
(the safety mitigations) included, each image's and audio clip's tokens too. They need this
process's own tokenizer: behind a remote engine (`--backend openai`) they are a 400."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from app.admission import Admission
from app.api_errors import ModelNotFound
from app.chat_content import to_messages
from app.chat_request import model_names, read_request
from app.chat_schema import ChatMessage, Lenient
from app.metrics import ServerMetrics
from app.openapi import documented
from app.service import ConversationService
from core.errors import InvalidRequest
from core.settings import Settings
from engine.request import SamplingParams


class TokenizeRequest(Lenient):
    model_config = ConfigDict(strict=True, extra="forbid")

    model: str | None = None
    prompt: str | None = None  # text as it is, or
    messages: list[ChatMessage] | None = None  # a conversation, as a chat request sends it
    add_special_tokens: bool = True  # for `prompt`
    add_generation_prompt: bool = True  # accepted: a conversation always ends with the assistant's turn opened
    return_token_strs: bool = False


class TokenizeResponse(BaseModel):
    count: int
    max_model_len: int
    tokens: list[int]
    token_strs: list[str] | None = None


class DetokenizeRequest(Lenient):
    model_config = ConfigDict(strict=True, extra="forbid")

    model: str | None = None
    tokens: list[int]


class DetokenizeResponse(BaseModel):
    prompt: str


def build_tokenize_router(
    service: ConversationService, settings: Settings, admission: Admission, metrics: ServerMetrics
) -> APIRouter:
    router = APIRouter()
    engine = service.engine

    def answered(endpoint: str, body: BaseModel) -> JSONResponse:
        return metrics.answered(endpoint, JSONResponse(body.model_dump(exclude_none=True)))

    def tokenizer_for(model: str | None):
        if model is not None and model not in model_names(settings, engine.adapters):
            raise ModelNotFound(f"The model {model!r} does not exist here.")
        tokenizer = getattr(engine, "tokenizer", None)  # the local engine's (engine/engine.py)
        if tokenizer is None:
            raise InvalidRequest("Tokenizing needs the model in this process; this server relays to a remote one.")
        return tokenizer

    def tokens_of(body: TokenizeRequest) -> list[int]:
        tokenizer = tokenizer_for(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise InvalidRequest("Send either `prompt` or `messages`.", param="prompt")
        if body.prompt is not None:
            return tokenizer(body.prompt, add_special_tokens=body.add_special_tokens)["input_ids"]
        request, _, _ = service.build_request(
            to_messages(body.messages, settings), SamplingParams(max_new_tokens=1), adapter=None
        )
        return engine.prepare(request).input_ids[0].tolist()

    @router.post("/tokenize", **documented(TokenizeResponse, request=TokenizeRequest))
    async def tokenize(request: Request):
        body = read_request(await request.body(), TokenizeRequest)
        with admission.enter():  # a conversation's media is decoded and processed: a slot's work
            tokens = await run_in_threadpool(tokens_of, body)
        strings = tokenizer_for(body.model).convert_ids_to_tokens(tokens) if body.return_token_strs else None
        return answered(
            "tokenize",
            TokenizeResponse(count=len(tokens), max_model_len=engine.context_window, tokens=tokens, token_strs=strings),
        )

    @router.post("/detokenize", **documented(DetokenizeResponse, request=DetokenizeRequest))
    async def detokenize(request: Request):
        body = read_request(await request.body(), DetokenizeRequest)
        tokenizer = tokenizer_for(body.model)
        if any(not 0 <= t < len(tokenizer) for t in body.tokens):
            raise InvalidRequest(f"Every token must be between 0 and {len(tokenizer) - 1}.", param="tokens")
        return answered("detokenize", DetokenizeResponse(prompt=tokenizer.decode(body.tokens)))

    return router
