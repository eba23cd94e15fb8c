"""Every error the API answers with, in OpenAI's body {"error": {"message", "type", "param",
"code"}}, from one exception handler (`install`): our typed errors by their kind, a body that
fails the protocol models (app/chat_schema.py) as 400 naming the field, and anything unexpected as
a logged 500 whose message says nothing of the server's internals, and a client that left while
sending its request as 499 (below). Routes raise; they never build an error response themselves."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from app.chat_schema import CONTENT_TYPES, ErrorDetail, ErrorResponse
from core.errors import GenerationFailed, InvalidRequest, ModelUnavailable, Overloaded, Phi4mmError, generation_failed

log = logging.getLogger(__name__)
# pydantic names the union member it tried in an error's location ("str", "list[...]"): not a field
TYPE_LABELS = {"str", "int", "float", "bool", "none", "dict"}
REQUEST_PARTS = {"body", "query", "path", "header", "cookie"}
# nginx's "client closed request": the client went away before its request was whole, so no answer
# reaches anyone; the status is what /metrics and the log call it (a cancelled request, not a failure)
CLIENT_CLOSED = 499


class NotAJsonObject(InvalidRequest):
    """The body cannot be read as one JSON object (422, as FastAPI answers unreadable bodies)."""

    def __init__(self):
        super().__init__("The body must be a JSON object.")


class TooLarge(InvalidRequest):
    """A body or upload over the size limit (413)."""


class NotFound(InvalidRequest):
    """A request names something this server does not have (404 with `code`)."""

    def __init__(self, message: str, param: str | None = None, code: str = "not_found"):
        super().__init__(message, param)
        self.code = code


class ModelNotFound(NotFound):
    """A request names a model this server does not serve (404, code model_not_found)."""

    def __init__(self, message: str):
        super().__init__(message, "model", "model_not_found")


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    return ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=code)).model_dump()


def field_path(location: tuple) -> str:
    """pydantic's error location -> the field as a client names it: messages[0].content[1].image_url."""
    path, previous = "", None
    if location and location[0] in REQUEST_PARTS:  # FastAPI's form and query errors say where first
        location = location[1:]
    for item in location:
        if isinstance(item, int):
            path += f"[{item}]"
        elif "[" in item or item in TYPE_LABELS or (isinstance(previous, int) and item in CONTENT_TYPES):
            pass  # a union member's label, or a content part's `type` tag: not a field
        else:
            path += f".{item}" if path else item
        previous = item
    return path


def invalid_body(errors: list[dict]) -> InvalidRequest:
    """pydantic's errors -> one message about the deepest field that is wrong (where a field may
    take several types, what each would have needed)."""
    for error in errors:
        if error["type"] == "extra_forbidden":
            return InvalidRequest(
                f"`{field_path(error['loc'])}` is not supported by this server.", param=field_path(error["loc"])
            )
        if error["type"] == "union_tag_invalid":
            return InvalidRequest(
                f"Unsupported content part type {error['ctx']['tag']!r}; use {', '.join(CONTENT_TYPES)}.",
                param=field_path(error["loc"]),
            )
        if error["type"] == "unsupported_item":  # a Responses input item (app/responses_schema.py)
            kind = error["input"].get("type") if isinstance(error["input"], dict) else None
            return InvalidRequest(f"Unsupported item type {kind!r}; {error['msg']}.", param=field_path(error["loc"]))
    deepest = max((field_path(e["loc"]) for e in errors), key=lambda p: p.count(".") + p.count("["))
    reasons = list(
        dict.fromkeys(e["msg"][:1].lower() + e["msg"][1:] for e in errors if field_path(e["loc"]) == deepest)
    )
    return InvalidRequest(f"`{deepest or 'body'}` is not valid: {'; or '.join(reasons)}.", param=deepest or None)


def response_for(err: BaseException, headers: dict | None = None) -> JSONResponse:
    """Any exception -> the HTTP status and OpenAI error body a client expects."""
    headers = dict(headers or {})
    if isinstance(err, (ValidationError, RequestValidationError)):
        err = invalid_body(err.errors())
    if not isinstance(err, Phi4mmError):
        log.error("unexpected error in an API request", exc_info=err)
        err = generation_failed(err)  # a bug repeats: no "try again"
        return JSONResponse(error_body(str(err), "server_error"), status_code=500, headers=headers)
    if isinstance(err, Overloaded):
        headers["Retry-After"] = str(err.retry_after)
        return JSONResponse(error_body(str(err), "rate_limit_error", code="rate_limit_exceeded"), 429, headers)
    if isinstance(err, ModelUnavailable):
        headers["Retry-After"] = "5"
        return JSONResponse(error_body(str(err), "server_error", code="engine_unavailable"), 503, headers)
    if isinstance(err, TooLarge):
        return JSONResponse(error_body(str(err), code="request_too_large"), 413, headers)
    if isinstance(err, NotFound):
        return JSONResponse(error_body(str(err), param=err.param, code=err.code), 404, headers)
    if isinstance(err, InvalidRequest):
        return JSONResponse(
            error_body(str(err), param=err.param), 422 if isinstance(err, NotAJsonObject) else 400, headers
        )
    code = "generation_failed" if isinstance(err, GenerationFailed) else None
    return JSONResponse(error_body(str(err), "server_error", code=code), 500, headers)


class APIError(Exception):
    """An error on its way to the handler with the response headers it must keep (the adapter a
    request was routed to, say) and, for an upload, the field to blame."""

    def __init__(self, error: Phi4mmError, headers: dict, param: str | None = None):
        super().__init__(str(error))
        self.error, self.headers, self.param = error, headers, param


def left_early(err: BaseException) -> bool:
    """Whether `err` is a client leaving during its upload: Starlette's ClientDisconnect, raised
    while a route reads the body, or FastAPI's 400 "error parsing the body" wrapped around one
    (it reads a multipart form before the route runs)."""
    return isinstance(err, ClientDisconnect) or (
        isinstance(err, HTTPException) and isinstance(err.__cause__, ClientDisconnect)
    )


def install(api: FastAPI, on_error=lambda path, status: None) -> None:
    """The one exception handler: every error any route raises becomes OpenAI's body.
    `on_error(path, status)` counts it (the server's /metrics)."""

    async def handle(request: Request, err: Exception) -> Response:
        if left_early(err):
            # the client's choice, not the server's fault: one line, no traceback, counted as cancelled
            log.info("%s %s: the client left before its request was complete", request.method, request.url.path)
            on_error(request.url.path, CLIENT_CLOSED)
            return Response(status_code=CLIENT_CLOSED)
        if isinstance(err, HTTPException):  # FastAPI's own (a 404, a 405, a broken multipart body): its
            # status and words, in OpenAI's body like every other error
            kind = "invalid_request_error" if err.status_code < 500 else "server_error"
            return JSONResponse(error_body(str(err.detail), kind), err.status_code, err.headers)
        headers = None
        if isinstance(err, APIError):
            headers, inner = err.headers, err.error
            if err.param and isinstance(inner, InvalidRequest):
                inner.param = err.param
            err = inner
        response = response_for(err, headers)
        on_error(request.url.path, response.status_code)
        return response

    # the expected kinds are answered where they are raised; Exception (a bug) also reaches the
    # server's log with its traceback, after the client has its 500. ClientDisconnect is named on its
    # own so it is one of the expected kinds, not a bug; HTTPException, to see the one FastAPI wraps it in.
    kinds = (Phi4mmError, APIError, RequestValidationError, ValidationError, ClientDisconnect, HTTPException)
    for kind in (*kinds, Exception):
        api.add_exception_handler(kind, handle)
