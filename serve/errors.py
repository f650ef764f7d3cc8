"""Errors answered as JSON `{"error": {"message", "type"}}`: the library's typed errors become
422 with their message (they already name the field at fault), server conditions their status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from chatbot.errors import ChatbotError


class ApiError(Exception):
    """An HTTP error with a status, a machine-readable type and a message for people."""

    def __init__(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.headers = headers


def error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _api_error(_: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.kind, error.message, error.headers)


async def _chatbot_error(_: Request, error: ChatbotError) -> JSONResponse:
    return error_response(422, "invalid_request", str(error))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ChatbotError, _chatbot_error)
