"""Typed request and response bodies of the OpenAI Chat Completions API, as far as this server
speaks it (compare vLLM's `vllm/entrypoints/openai/protocol.py`).

The request maps onto the same path as `/v1/chat` (`ChatCompletionRequest.to_chat`): the last
message (a user's) is the message, earlier user and assistant messages are the history, system
messages are ignored (the model has no instructions channel). `temperature` 0 (or below 0.01)
means deterministic decoding (greedy, or a beam of `n` for several choices); any other
`temperature`, a `top_p`, or `n` > 1 means sampling.

Extension: `decoding` takes the same object as `/v1/chat` (beam search, top-k, n-gram blocking,
MMI, ...) and overrides what the OpenAI fields map to; OpenAI clients send it with
`extra_body={"decoding": {...}}`, as they do for other servers' extensions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer, model_validator

from chatbot.config import MIN_TEMPERATURE
from chatbot.decoding.search import FinishReason
from serve.schemas import ChatRequest, DecodingRequest, Strict, Turn

FinishReasonName = Literal["stop", "length"]
FINISH_REASONS: dict[FinishReason, FinishReasonName] = {
    FinishReason.EOS: "stop",
    FinishReason.LENGTH: "length",
}


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(Strict):
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    seed: int | None = None
    stream: bool = False
    user: str | None = None
    decoding: DecodingRequest | None = None  # extension: `/v1/chat`'s decoding overrides

    @model_validator(mode="after")
    def _ends_with_a_user_message(self) -> ChatCompletionRequest:
        turns = [m for m in self.messages if m.role != "system"]
        if not turns or turns[-1].role != "user" or not turns[-1].content.strip():
            raise ValueError("the last non-system message must be a non-empty user message")
        return self

    def to_chat(self) -> ChatRequest:
        """The same request in `/v1/chat`'s shape; raises `ValidationError` when a mapped
        value is beyond the decoding bounds (say, `n`)."""
        turns = [m for m in self.messages if m.role != "system"]
        decoding: dict[str, Any] = {
            "max_length": self.max_completion_tokens or self.max_tokens,
            "seed": self.seed,
        }
        if self.temperature is not None and self.temperature < MIN_TEMPERATURE:
            if self.n > 1:
                decoding.update(strategy="beam", beam_width=self.n, n_best=self.n)
            else:
                decoding.update(strategy="greedy")
        elif self.temperature is not None or self.top_p is not None or self.n > 1:
            decoding.update(
                strategy="sample", n_best=self.n, temperature=self.temperature, top_p=self.top_p
            )
        decoding = {k: v for k, v in decoding.items() if v is not None}
        if self.decoding is not None:
            decoding.update(self.decoding.model_dump(exclude_none=True))
        return ChatRequest(
            message=turns[-1].content,
            history=[Turn(role=m.role, text=m.content) for m in turns[:-1]],
            decoding=DecodingRequest(**decoding),
        )


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatCompletionChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReasonName


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatCompletionChoice]
    usage: CompletionUsage


class ChoiceDelta(BaseModel):
    """What a chunk adds to a choice; fields not sent are left out of the JSON."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatCompletionChunkChoice(BaseModel):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReasonName | None = None

    @field_serializer("delta")
    def _sent_fields_only(self, delta: ChoiceDelta) -> dict[str, Any]:
        return delta.model_dump(exclude_none=True)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatCompletionChunkChoice]
