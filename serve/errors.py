"""Every error is answered as JSON `{"error": {"message", "type", "param", "code"}}`, OpenAI's
shape, so clients parse one shape: validation errors (422) add `details`, a list of `{loc, msg,
type}` naming each field at fault (the offending input is not echoed back); the library's typed
errors become 422 with their message (they already name the field); server conditions keep
their status; a full queue is 429 with `Retry-After`; a request that needs the session store
while it cannot be reached is 503 `session_store_unavailable`. Even an unexpected exception is
answered in this shape (500, with no detail from the exception, which is logged instead).

On the OpenAI routes an invalid or unsupported field is 400 `invalid_request_error`, as OpenAI
answers it, with `param` naming the field and `code` saying `invalid_value` or
`unsupported_parameter`, so the official clients raise `BadRequestError` with our message."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from chatbot.errors import ChatbotError
from serve.batcher import OverloadedError
from serve.metrics import Metrics
from serve.sessions import SessionStoreUnavailableError

log = logging.getLogger(__name__)

# The routes that answer invalid requests as OpenAI's API does (400, `param` and `code`).
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
OPENAI_INVALID = "invalid_request_error"


class ApiError(Exception):
    """An HTTP error with a status, a machine-readable type and a message for people, and the
    field at fault (`param`) and what is wrong with it (`code`) when they apply."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers
        self.param = param
        self.code = code


def error_response(
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    **more: Any,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code, **more}}
    return JSONResponse(body, status_code=status, headers=headers)


def _where(loc: Any) -> str:
    return ".".join(str(part) for part in loc if part != "body") or "body"


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in jsonable_encoder(error.errors())
    ]
    message = "; ".join(f"{_where(d['loc'])}: {d['msg']}" for d in details)
    if request.url.path in OPENAI_PATHS:
        first = details[0] if details else {"loc": [], "type": ""}
        param = _where(first["loc"]) if _where(first["loc"]) != "body" else None
        unsupported = first["type"] == "unsupported_parameter"
        code = "unsupported_parameter" if unsupported else "invalid_value"
        return error_response(400, OPENAI_INVALID, message, param=param, code=code)
    return error_response(422, "invalid_request", message, details=details)


# The `type` of the framework's HTTP errors: 400 is a body that is not readable JSON (invalid
# UTF-8, nested too deep), 413 one over `max_body_bytes`.
_HTTP_KINDS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


async def _http_error(_: Request, error: HTTPException) -> JSONResponse:
    kind = _HTTP_KINDS.get(error.status_code, "http_error")
    return error_response(error.status_code, kind, str(error.detail), error.headers)


def overloaded_response(error: OverloadedError, metrics: Metrics) -> JSONResponse:
    """The one way a refusal for a full queue is counted and answered: 429 with `Retry-After`,
    from the exception handler and from the middleware that sheds before parsing alike."""
    metrics.rejected.labels("overloaded").inc()
    headers = {"Retry-After": str(error.retry_after)}
    return error_response(429, "overloaded", str(error), headers)


async def _overloaded(request: Request, error: OverloadedError) -> JSONResponse:
    return overloaded_response(error, request.app.state.metrics)


async def _api_error(_: Request, error: ApiError) -> JSONResponse:
    return error_response(
        error.status,
        error.kind,
        error.message,
        error.headers,
        param=error.param,
        code=error.code,
    )


async def _chatbot_error(request: Request, error: ChatbotError) -> JSONResponse:
    if request.url.path in OPENAI_PATHS:
        return error_response(400, OPENAI_INVALID, str(error), code="invalid_value")
    return error_response(422, "invalid_request", str(error))


SESSIONS_UNAVAILABLE = (
    "sessions are unavailable: the session store cannot be reached; retry later, or send the "
    "conversation as `history` instead of a `session_id`"
)


async def _session_store_unavailable(
    _: Request, error: SessionStoreUnavailableError
) -> JSONResponse:
    """503 for a request that needs the session store while it is down; the cause, which may
    name the store's address, goes to the log only."""
    log.warning("session store unavailable: %s", error)
    return error_response(
        503, "unavailable", SESSIONS_UNAVAILABLE, code="session_store_unavailable"
    )


async def _internal_error(_: Request, error: Exception) -> JSONResponse:
    """A bug, answered in the documented shape rather than Starlette's plain-text 500; the
    exception (which may quote request text) goes to the log only, re-raised by Starlette."""
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ChatbotError, _chatbot_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OverloadedError, _overloaded)
    app.add_exception_handler(SessionStoreUnavailableError, _session_store_unavailable)
