"""`/v1/chat/completions` and `/v1/completions` behind their routes: the OpenAI request mapped
onto `/v1/chat`'s path, answered in OpenAI's shapes or, with `stream`, as Server-Sent Events.

The whole reply is decoded in one compiled loop first; a stream then sends it in OpenAI's chunk
format, one chunk per token that adds text (the text it adds, by the reply's own per-token text
offsets, cut before a stop sequence), ending with `data: [DONE]`. Finish reasons are the
decoder's: "length" when the loop forced the end at `max_tokens`, else "stop". Per-token
log-probabilities come from the same loop.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ValidationError

from chatbot.bot import Candidate, Chatbot, Reply, TokenLogprob
from serve.deps import get_bot
from serve.errors import OPENAI_INVALID, ApiError
from serve.limits import limit_errors
from serve.protocol import (
    FINISH_REASONS,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionChunkChoice,
    ChatCompletionRequest,
    ChoiceDelta,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionRequest,
    CompletionUsage,
    LegacyLogprobs,
    OpenAIOptions,
    TextCompletion,
    TokenLogprobOut,
    TopLogprob,
)
from serve.schemas import ChatRequest, DecodingRequest
from serve.serving import ChatServing

# Where a limit on the mapped request shows up in the OpenAI request.
_FIELDS = {"message": "messages", "history": "messages", "decoding": None}
_DECODING_FIELDS = {"max_length": "max_tokens", "n_best": "n", "beam_width": "n"}


class _Piece(BaseModel):
    """A streamed chunk's share of a candidate: the text it adds and the tokens it covers."""

    text: str
    start: int  # the first token's index
    stop: int  # one past the last


class OpenAIServing:
    """Completions for one HTTP request, through `ChatServing`."""

    def __init__(self, serving: ChatServing) -> None:
        self.serving = serving

    async def chat(self, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
        reply, candidates = await self._reply(body)
        meta, usage, top = self._meta("chatcmpl"), _usage(reply, candidates), body.logprobs_wanted
        if body.stream:
            events = _chat_events(candidates, top, usage, body, meta)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = [
            ChatCompletionChoice(
                index=i,
                message=AssistantMessage(content=c.text),
                logprobs=_chat_logprobs(c.logprobs, top),
                finish_reason=FINISH_REASONS[c.finish_reason],
            )
            for i, c in enumerate(candidates)
        ]
        return ChatCompletion(**meta, choices=choices, usage=usage)

    async def complete(self, body: CompletionRequest) -> TextCompletion | StreamingResponse:
        reply, candidates = await self._reply(body)
        meta, usage, top = self._meta("cmpl"), _usage(reply, candidates), body.logprobs_wanted
        if body.stream:
            events = _text_events(candidates, top, usage, body, meta)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = [
            CompletionChoice(
                index=i,
                text=c.text,
                logprobs=_legacy_logprobs(c, top, 0, len(c.logprobs)),
                finish_reason=FINISH_REASONS[c.finish_reason],
            )
            for i, c in enumerate(candidates)
        ]
        return TextCompletion(**meta, choices=choices, usage=usage)

    def _meta(self, prefix: str) -> dict[str, Any]:
        """The id, creation time and model every response and chunk of a completion carries."""
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "created": int(time.time()),
            "model": self.serving.model_name,
        }

    async def _reply(
        self, body: ChatCompletionRequest | CompletionRequest
    ) -> tuple[Reply, list[Candidate]]:
        """The reply to `body` and its choices, with the settings merged once."""
        self._check_model(body.model)
        chat = self._mapped(body)
        decoding = self.serving.decoding(chat.decoding, logprobs=body.logprobs_wanted)
        history = [turn.text for turn in chat.history]
        reply = await self.serving.reply(chat.message, history, decoding)
        chosen = reply.candidates[: body.choices] if decoding.n_best > 1 else reply.candidates[:1]
        return reply, chosen

    def _check_model(self, model: str | None) -> None:
        """404 `model_not_found` unless `model` names the served model (or is left out)."""
        if model is not None and model not in self.serving.model_names:
            raise ApiError(
                404,
                OPENAI_INVALID,
                f"the model {model!r} does not exist; this server serves "
                f"{self.serving.model_name!r} (GET /v1/models)",
                param="model",
                code="model_not_found",
            )

    def _mapped(self, body: ChatCompletionRequest | CompletionRequest) -> ChatRequest:
        """The request as `/v1/chat` takes it, within the server's limits (400 otherwise, at
        the OpenAI fields the values came from)."""
        try:
            chat = body.to_chat()
        except ValidationError as error:  # a mapped value beyond the decoding bounds, e.g. n
            errors = [{**e, "loc": ("body", "decoding", *e["loc"])} for e in error.errors()]
            raise RequestValidationError(_openai_errors(errors, body.decoding)) from None
        errors = limit_errors(chat, self.serving.settings)
        if errors:
            raise RequestValidationError(_openai_errors(errors, body.decoding))
        return chat


def openai_serving(request: Request, _: Chatbot = Depends(get_bot)) -> OpenAIServing:
    """The routes' dependency: 503 while the model loads, before the body is mapped."""
    return OpenAIServing(ChatServing(request))


def _openai_errors(
    errors: list[dict[str, Any]], extension: DecodingRequest | None
) -> list[dict[str, Any]]:
    """Limit errors found on the mapped request, located at the fields they came from: the
    `decoding` extension when it set the value, else the OpenAI field it was mapped from."""
    given = extension.model_fields_set if extension is not None else set()
    located = []
    for error in errors:
        _, field, *rest = error["loc"]
        if field == "decoding" and rest[0] in given:
            loc: tuple[Any, ...] = ("body", "decoding", rest[0])
        elif field == "decoding":
            loc = ("body", _DECODING_FIELDS.get(rest[0], rest[0]))
        else:
            loc = ("body", _FIELDS[field])
        located.append({**error, "loc": loc})
    return located


def _usage(reply: Reply, candidates: list[Candidate]) -> CompletionUsage:
    completion_tokens = sum(c.tokens for c in candidates)
    return CompletionUsage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=reply.prompt_tokens + completion_tokens,
    )


def _top(token: str, log_prob: float) -> TopLogprob:
    return TopLogprob(token=token, logprob=log_prob, bytes=list(token.encode()))


def _chat_logprobs(entries: tuple[TokenLogprob, ...], top: int | None) -> ChoiceLogprobs | None:
    """Chat's `logprobs.content`: per token, its text, log-probability, UTF-8 bytes and the
    `top` likeliest tokens at that step; None when not asked for."""
    if top is None:
        return None
    content = [
        TokenLogprobOut(
            **_top(entry.token, entry.log_prob).model_dump(),
            top_logprobs=[_top(token, value) for token, value in entry.top[:top]],
        )
        for entry in entries
    ]
    return ChoiceLogprobs(content=content)


def _legacy_logprobs(
    candidate: Candidate, top: int | None, start: int, stop: int
) -> LegacyLogprobs | None:
    """The legacy `logprobs` of tokens `start` to `stop`: their texts, log-probabilities,
    alternatives and where each starts in the text; None when not asked for."""
    if top is None:
        return None
    entries = candidate.logprobs[start:stop]
    starts = [0, *candidate.offsets[:-1]][start:stop]
    return LegacyLogprobs(
        tokens=[e.token for e in entries],
        token_logprobs=[e.log_prob for e in entries],
        top_logprobs=[dict(e.top[:top]) for e in entries],
        text_offset=starts,
    )


def _pieces(candidate: Candidate) -> list[_Piece]:
    """The candidate's streamed pieces: one per token that adds text; a token that adds none
    (part of a character) goes with the next piece, or the last."""
    sent, start, pieces = 0, 0, []
    for index, end in enumerate(candidate.offsets):
        if end > sent:
            pieces.append(_Piece(text=candidate.text[sent:end], start=start, stop=index + 1))
            sent, start = end, index + 1
    if start < len(candidate.offsets):  # trailing tokens that add no text
        if pieces:
            pieces[-1] = pieces[-1].model_copy(update={"stop": len(candidate.offsets)})
        elif candidate.logprobs:  # no text at all: a chunk only to carry the log-probabilities
            pieces.append(_Piece(text="", start=0, stop=len(candidate.offsets)))
    return pieces


def _sse(chunk: BaseModel) -> str:
    return f"data: {chunk.model_dump_json()}\n\n"


def _events(
    candidates: list[Candidate],
    usage: CompletionUsage,
    options: OpenAIOptions,
    chunk: Callable[[list[Any], CompletionUsage | None], BaseModel],
    choice_chunks: Callable[[int, Candidate], Iterator[Any]],
) -> Iterator[str]:
    """The Server-Sent Events of a stream: each choice's chunks in turn, a final chunk with
    empty `choices` and the usage when `stream_options.include_usage` asks for it, [DONE]."""
    for index, candidate in enumerate(candidates):
        for choice in choice_chunks(index, candidate):
            yield _sse(chunk([choice], None))
    if options.include_usage:
        yield _sse(chunk([], usage))
    yield "data: [DONE]\n\n"


def _chat_events(
    candidates: list[Candidate],
    top: int | None,
    usage: CompletionUsage,
    options: OpenAIOptions,
    meta: dict[str, Any],
) -> Iterator[str]:
    """`chat.completion.chunk` events: per choice a role chunk, its pieces (with their tokens'
    log-probabilities when asked for), a final chunk with the finish reason."""

    def choice_chunks(index: int, candidate: Candidate) -> Iterator[ChatCompletionChunkChoice]:
        yield ChatCompletionChunkChoice(index=index, delta=ChoiceDelta(role="assistant"))
        for piece in _pieces(candidate):
            entries = candidate.logprobs[piece.start : piece.stop]
            yield ChatCompletionChunkChoice(
                index=index,
                delta=ChoiceDelta(content=piece.text),
                logprobs=_chat_logprobs(entries, top),
            )
        finish = FINISH_REASONS[candidate.finish_reason]
        yield ChatCompletionChunkChoice(index=index, delta=ChoiceDelta(), finish_reason=finish)

    def chunk(choices: list[Any], usage: CompletionUsage | None) -> ChatCompletionChunk:
        return ChatCompletionChunk(**meta, choices=choices, usage=usage)

    return _events(candidates, usage, options, chunk, choice_chunks)


def _text_events(
    candidates: list[Candidate],
    top: int | None,
    usage: CompletionUsage,
    options: OpenAIOptions,
    meta: dict[str, Any],
) -> Iterator[str]:
    """Legacy `text_completion` chunks: per choice its pieces, then its finish reason."""

    def choice_chunks(index: int, candidate: Candidate) -> Iterator[CompletionChoice]:
        for piece in _pieces(candidate):
            logprobs = _legacy_logprobs(candidate, top, piece.start, piece.stop)
            yield CompletionChoice(index=index, text=piece.text, logprobs=logprobs)
        finish = FINISH_REASONS[candidate.finish_reason]
        yield CompletionChoice(index=index, text="", finish_reason=finish)

    def chunk(choices: list[Any], usage: CompletionUsage | None) -> TextCompletion:
        return TextCompletion(**meta, choices=choices, usage=usage)

    return _events(candidates, usage, options, chunk, choice_chunks)
