"""The server's own limits on a chat request (body size, message size, history length, search
size), kept apart from the schemas because they come from `Settings`, not from the code."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.batcher import OverloadedError
from serve.errors import error_response, overloaded_response
from serve.schemas import ChatRequest
from serve.settings import Settings


class BodyTooLarge(HTTPException):
    """Raised while reading a body that grew past the limit. An `HTTPException`, so FastAPI's
    body parsing lets it through (anything else becomes its generic 400) and the app's handler
    answers it in the error shape; `Connection: close`, so the rest is not read and discarded."""

    def __init__(self, max_bytes: int) -> None:
        message = f"the request body is over {max_bytes} bytes"
        super().__init__(413, message, headers={"Connection": "close"})


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 before it is parsed.

    Without it FastAPI reads and parses a JSON body of any size before the message and history
    limits can refuse it. A `Content-Length` over the limit is answered before any of the body is
    read (or a route matched, or a key checked); a chunked body is counted as it arrives and
    refused as soon as it is over."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:  # read outside FastAPI's body parsing: answer it here
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = BodyTooLarge(self.max_bytes)
        response = error_response(413, "too_large", error.detail, error.headers)
        await response(scope, receive, send)


class ShedWhenFull:
    """ASGI middleware: while the model's queue is full, a request for a reply (a POST to one of
    `paths`) is refused with 429 and `Retry-After` before it is routed, authenticated, parsed or
    validated; its body is read and dropped, so the connection stays usable.

    Under overload most requests are refused, and refusing them only once FastAPI had parsed and
    validated them spent CPU that the model needed for the accepted ones (`bench/overload.py`).
    The batcher checks again when a request joins the queue."""

    def __init__(self, app: ASGIApp, paths: set[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            state = scope["app"].state
            try:
                if state.batcher is not None:
                    state.batcher.check_room()
            except OverloadedError as error:
                while (await receive()).get("more_body", False):
                    pass
                await overloaded_response(error, state.metrics)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _error(loc: tuple[str | int, ...], kind: str, msg: str, value: Any) -> dict[str, Any]:
    return {"type": kind, "loc": ("body", *loc), "msg": msg, "input": value}


def limit_errors(request: ChatRequest, settings: Settings) -> list[dict[str, Any]]:
    """Violations in FastAPI's validation-error format (empty when the request fits)."""
    errors = []
    chars = settings.max_message_chars
    if len(request.message) > chars:
        errors.append(_error(("message",), "too_long", f"at most {chars} characters", None))
    if len(request.history) > settings.max_history_turns:
        msg = f"at most {settings.max_history_turns} turns"
        errors.append(_error(("history",), "too_long", msg, len(request.history)))
    for index, turn in enumerate(request.history):
        if len(turn.text) > chars:
            msg = f"at most {chars} characters"
            errors.append(_error(("history", index, "text"), "too_long", msg, None))
    if request.decoding is not None:
        caps = {
            "max_length": settings.max_length,
            "beam_width": settings.max_beam_width,
            "n_best": settings.max_n_best,
            "n_samples": settings.max_n_samples,
        }
        for name, cap in caps.items():
            value = getattr(request.decoding, name)
            if value is not None and value > cap:
                msg = f"{name} must be at most {cap} on this server"
                errors.append(_error(("decoding", name), "less_than_equal", msg, value))
    return errors
