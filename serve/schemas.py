"""Request and response bodies of the HTTP API. Unknown fields are refused (422), so a typo in
a decoding knob is reported instead of silently ignored. Limits that depend on the server's
settings are checked in `serve.limits`."""

from __future__ import annotations

import copy
import re
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from chatbot.config import DecodingConfig

SESSION_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Strict(BaseModel):
    """Unknown fields are refused and values are not coerced (`true` is not 1, `"3"` not 3).

    Text must be valid Unicode. JSON can spell a lone UTF-16 surrogate (`"\\ud800"`), which
    Python decodes into a string that cannot be encoded as UTF-8: kept in a session, it made
    reading the session back fail with 500. It carries no text, so it is refused (422) rather
    than dropped. Control characters are valid text and are accepted; the normalizer removes
    them before the model sees the message.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        if isinstance(value, str) and _LONE_SURROGATE.search(value):
            raise ValueError("a lone UTF-16 surrogate (\\ud800-\\udfff) is not valid text")
        return value


class Turn(Strict):
    """One earlier turn. Only `text` reaches the model, which reads history as alternating
    turns, oldest first; `role` documents who said it."""

    role: Literal["user", "assistant"]
    text: str


def _optional_fields(model: type[BaseModel], leave_out: set[str]) -> dict[str, Any]:
    """`model`'s fields with their bounds, each optional with default None; a tuple field
    takes a JSON array (a list, which strict validation does not take for a tuple)."""
    fields = {}
    for name, info in model.model_fields.items():
        if name not in leave_out:
            optional = copy.copy(info)
            optional.default = None
            annotation = info.annotation
            if get_origin(annotation) is tuple:
                annotation = list[get_args(annotation)[0]]
            fields[name] = (annotation | None, optional)
    return fields


# Per-request overrides of the bundle's decoding defaults, with `DecodingConfig`'s bounds (so the
# OpenAPI schema states them); an omitted field keeps the default. Banned phrases stay the
# operator's choice, set in the bundle's config; per-token log-probabilities are asked for with
# the OpenAI routes' `logprobs`, which return them.
DecodingRequest = create_model(
    "DecodingRequest",
    __base__=Strict,
    __doc__="Per-request overrides of the bundle's decoding defaults (see DecodingConfig).",
    **_optional_fields(DecodingConfig, {"banned_phrases", "logprobs"}),
)


class ChatRequest(Strict):
    """A message, the conversation before it (oldest first) and optional decoding settings.

    Either the client sends the `history` it wants the model to see (stateless), or it names
    a `session_id` (any random string, e.g. a UUID) and the server keeps the history: each
    exchange is appended to the session, which expires when idle. Not both at once.
    """

    message: str
    history: list[Turn] = []
    session_id: str | None = Field(default=None, pattern=SESSION_ID_PATTERN)
    decoding: DecodingRequest | None = None

    @model_validator(mode="after")
    def _history_or_session(self) -> ChatRequest:
        if self.session_id is not None and self.history:
            raise ValueError("send either history or session_id, not both")
        return self

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be empty")
        return value


class CandidateOut(BaseModel):
    text: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    reply_tokens: int


class ChatResponse(BaseModel):
    """The best reply; `candidates` (best first) only when more than one was asked for."""

    reply: str
    candidates: list[CandidateOut] | None = None
    session_id: str | None = None
    usage: Usage
    model: str


class SessionOut(BaseModel):
    session_id: str
    history: list[Turn]


class ErrorDetail(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every error's body, OpenAI's shape: `param` names the field at fault when one is, `code`
    says what is wrong with it; `details` (422 only) names each field at fault."""

    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer."""
    meaning = {
        400: "the body is not valid UTF-8, or nests too deep; on the OpenAI routes, any invalid "
        "or unsupported field (`param` names it)",
        401: "missing or invalid API key (when keys are configured)",
        404: "no such resource (on the OpenAI routes, `model_not_found`)",
        413: "the body is over the server's `max_body_bytes`",
        422: "invalid JSON, or a field invalid or over a server limit; `details` names it",
        429: "the queue is full; retry after `Retry-After` seconds",
        503: "the model is not loaded yet, or the request names a session and the session "
        "store cannot be reached",
        504: "no reply within the request timeout",
    }
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}
