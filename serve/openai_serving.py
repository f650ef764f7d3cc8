"""`/v1/chat/completions` behind its route: the OpenAI request mapped onto `/v1/chat`'s path,
answered as a `ChatCompletion` or, with `stream`, as Server-Sent Events.

The whole reply is decoded in one compiled loop; a stream then sends it in OpenAI's chunk
format, one token a chunk (the text the token adds, by the reply's text offsets), ending with
`data: [DONE]`. Finish reasons are the decoder's: "length" when `max_tokens` forced the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from chatbot.bot import Candidate, Chatbot
from serve.deps import get_bot
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
    CompletionUsage,
)
from serve.schemas import ChatRequest, DecodingRequest
from serve.serving import ChatServing

# Where a limit on the mapped request shows up in the OpenAI request.
_FIELDS = {"message": "messages", "history": "messages", "decoding": None}
_DECODING_FIELDS = {"max_length": "max_tokens", "n_best": "n", "beam_width": "n"}


class OpenAIServing:
    """Chat completions for one HTTP request, through `ChatServing`."""

    def __init__(self, serving: ChatServing) -> None:
        self.serving = serving

    async def complete(self, body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
        chat = self._mapped(body)
        decoding = self.serving.decoding(chat.decoding)
        history = [turn.text for turn in chat.history]
        reply = await self.serving.reply(chat.message, history, decoding)
        candidates = reply.candidates[: body.n] if decoding.n_best > 1 else reply.candidates[:1]
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            chunks = _stream(candidates, completion_id, created, self.serving.model_name)
            return StreamingResponse(chunks, media_type="text/event-stream")
        completion_tokens = sum(c.tokens for c in candidates)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=self.serving.model_name,
            choices=[
                ChatCompletionChoice(
                    index=i,
                    message=AssistantMessage(content=c.text),
                    finish_reason=FINISH_REASONS[c.finish_reason],
                )
                for i, c in enumerate(candidates)
            ],
            usage=CompletionUsage(
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=reply.prompt_tokens + completion_tokens,
            ),
        )

    def _mapped(self, body: ChatCompletionRequest) -> ChatRequest:
        """The request as `/v1/chat` takes it, within the server's limits (422 otherwise, at
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
    """The route's dependency: 503 while the model loads, before the body is mapped."""
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


def _stream(
    candidates: list[Candidate], completion_id: str, created: int, model: str
) -> Iterator[str]:
    """OpenAI `chat.completion.chunk` events: per choice a role chunk, one chunk per token that
    adds text, a final chunk with the finish reason; then [DONE]."""

    def event(index: int, delta: ChoiceDelta, finish: Any = None) -> str:
        choice = ChatCompletionChunkChoice(index=index, delta=delta, finish_reason=finish)
        chunk = ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=[choice]
        )
        return f"data: {json.dumps(chunk.model_dump())}\n\n"

    for index, candidate in enumerate(candidates):
        yield event(index, ChoiceDelta(role="assistant"))
        sent = 0
        for end in candidate.offsets:
            if end > sent:
                yield event(index, ChoiceDelta(content=candidate.text[sent:end]))
                sent = end
        yield event(index, ChoiceDelta(), FINISH_REASONS[candidate.finish_reason])
    yield "data: [DONE]\n\n"
