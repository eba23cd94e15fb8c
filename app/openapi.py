"""`/openapi.json` with the real request and response schemas, generated from the pydantic models
of app/chat_schema.py and app/responses_schema.py, so that it can generate clients and drive a
fuzzer (schemathesis runs against it in the tests).

The routes read their JSON bodies themselves (app/chat_request.py: size and nesting first), so
FastAPI cannot see the models: each route names them with `documented(...)`, and `install`
puts their schemas into the document's components."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.chat_schema import ErrorResponse

PLACEHOLDER = "#/components/schemas/phi4mm:{}:{}"  # replaced by pydantic's own name in `install`
ERRORS = {
    "400": "Bad input: OpenAI's error body, `param` naming the field",
    "401": "A missing or wrong key",
    "404": "An unknown model (code model_not_found) or object",
    "413": "A body or file over the size limit",
    "422": "A body that is not one JSON object",
    "429": "Every generation slot and queue place taken (Retry-After)",
    "503": "The engine is unreachable or the server is stopping (Retry-After)",
}
_models: dict[str, tuple[type[BaseModel], str]] = {}


def _ref(model: type[BaseModel], mode: str) -> dict:
    key = PLACEHOLDER.format(model.__qualname__, mode)
    _models[key] = (model, mode)
    return {"$ref": key}


def documented(
    ok: type[BaseModel] | None,
    text: dict[str, str] | None = None,
    streams: bool = False,
    request: type[BaseModel] | None = None,
) -> dict:
    """The route decorator's `openapi_extra`: `request` as the JSON body; `ok` as the 200 JSON
    answer, `text`'s media types (format -> type) as plain-text answers, server-sent events when
    the route `streams`; every error as OpenAI's body."""
    content = {"application/json": {"schema": _ref(ok, "serialization")}} if ok else {}
    content.update({media: {"schema": {"type": "string"}} for media in (text or {}).values()})
    if streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    error = {"application/json": {"schema": _ref(ErrorResponse, "serialization")}}
    extra = {"responses": {"200": {"description": "OK", "content": content}}}
    extra["responses"].update({code: {"description": why, "content": error} for code, why in ERRORS.items()})
    if request is not None:
        extra["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request, "validation")}},
        }
    return {"openapi_extra": extra}


def install(api: FastAPI, title: str, version: str) -> None:
    """`api.openapi()` (what /openapi.json serves) with the documented models in its components."""

    def openapi() -> dict:
        if api.openapi_schema is None:
            doc = get_openapi(title=title, version=version, routes=api.routes)
            keys = list(_models)
            refs, top = models_json_schema([_models[k] for k in keys], ref_template="#/components/schemas/{model}")
            text = json.dumps(doc)
            for key in keys:
                text = text.replace(f'"{key}"', json.dumps(refs[_models[key]]["$ref"]))
            doc = json.loads(text)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
            api.openapi_schema = doc
        return api.openapi_schema

    api.openapi = openapi
