"""Typed request and response bodies of OpenAI's Chat Completions and (legacy) Completions APIs,
as far as this server speaks them (compare vLLM's `vllm/entrypoints/openai/protocol.py`).

A request maps onto the same path as `/v1/chat` (`to_chat`): for chat, the last message (a
user's) is the message, earlier user and assistant messages are the history, system and
developer messages are ignored (the model has no instructions channel); for completions the
prompt is the message. `temperature` 0 (or below 0.01) means deterministic decoding (greedy, or
a beam of `n` for several choices); any other `temperature`, a `top_p`, or `n` > 1 means
sampling. `stop`, `presence_penalty` and `frequency_penalty` become the decoding options of
the same names, `max_tokens` (or `max_completion_tokens`) `max_length`.

Every field of the current APIs is accepted. Those that ask for what a seq2seq chatbot cannot
do (tools, functions, structured output, audio, images, token biases) are refused with a
`unsupported_parameter` error naming the field; those that only concern OpenAI's service
(`metadata`, `store`, `service_tier`, prompt caching, ...) are accepted and have no effect, as
are fields added to OpenAI's API after these models were written.

Extension: `decoding` takes the same object as `/v1/chat` (beam search, top-k, n-gram blocking,
MMI, ...) and overrides what the OpenAI fields map to; OpenAI clients send it with
`extra_body={"decoding": {...}}`, as they do for other servers' extensions.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from chatbot.config import MAX_STOP_SEQUENCES, MAX_TOP_LOGPROBS, MIN_TEMPERATURE
from chatbot.decoding.search import FinishReason
from serve.schemas import ChatRequest, DecodingRequest, Strict, Turn

FinishReasonName = Literal["stop", "length"]
FINISH_REASONS: dict[FinishReason, FinishReasonName] = {
    FinishReason.EOS: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.STOP: "stop",
}
MAX_LEGACY_LOGPROBS = 5  # the legacy Completions API's bound


def unsupported(message: str) -> PydanticCustomError:
    """A validation error whose type, `unsupported_parameter`, becomes the OpenAI error code."""
    return PydanticCustomError("unsupported_parameter", message)


class OpenAIModel(Strict):
    """Values are not coerced and text must be valid Unicode, as in `/v1/chat`; unknown fields
    are ignored rather than refused, so clients that send newer fields keep working."""

    model_config = ConfigDict(extra="ignore")


class ContentPart(OpenAIModel):
    type: str
    text: str | None = None


class ChatMessage(OpenAIModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    function_call: Any = None
    audio: Any = None

    @field_validator("content")
    @classmethod
    def _text_only(cls, value: str | list[ContentPart] | None) -> str | list[ContentPart] | None:
        kinds = {part.type for part in value} - {"text"} if isinstance(value, list) else set()
        if kinds:
            raise unsupported(
                f"content parts of type {', '.join(sorted(kinds))} are not supported: the "
                "model reads text only"
            )
        return value

    @field_validator("role")
    @classmethod
    def _no_tool_results(cls, value: str) -> str:
        if value in ("tool", "function"):
            raise unsupported(f"{value} messages are not supported: the model calls no tools")
        return value

    @field_validator("tool_calls", "function_call", "audio")
    @classmethod
    def _no_calls(cls, value: Any) -> Any:
        if value:
            raise unsupported("assistant tool calls and audio are not supported")
        return value

    @property
    def text(self) -> str:
        """The message's text: its content, or its text parts joined by newlines."""
        if isinstance(self.content, list):
            return "\n".join(part.text or "" for part in self.content)
        return self.content or ""


class StreamOptions(OpenAIModel):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


def _refuse_if_set(value: Any, what: str) -> Any:
    if value:
        raise unsupported(what)
    return value


class OpenAIOptions(OpenAIModel):
    """What both APIs share: sampling, lengths, stop sequences, penalties, streaming."""

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    decoding: DecodingRequest | None = None  # extension: `/v1/chat`'s decoding overrides

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not stop for stop in stops):
            raise ValueError("a stop sequence must not be empty")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _no_biases(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value and any(value.values()):
            raise unsupported(
                "logit_bias is not supported beyond biases of 0: token ids are those of this "
                "model's own SentencePiece vocabulary, not OpenAI's"
            )
        return value

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def overrides(self, max_length: int | None) -> dict[str, Any]:
        """The decoding overrides these fields ask for, then the `decoding` extension's."""
        decoding: dict[str, Any] = {
            "max_length": max_length,
            "seed": self.seed,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "stop": [self.stop] if isinstance(self.stop, str) else self.stop,
        }
        if self.temperature is not None and self.temperature < MIN_TEMPERATURE:
            if self.choices > 1:
                decoding.update(strategy="beam", beam_width=self.choices, n_best=self.choices)
            else:
                decoding.update(strategy="greedy")
        elif self.temperature is not None or self.top_p is not None or self.choices > 1:
            decoding.update(
                strategy="sample",
                n_best=self.choices,
                temperature=self.temperature,
                top_p=self.top_p,
            )
        decoding = {k: v for k, v in decoding.items() if v is not None}
        if self.decoding is not None:
            decoding.update(self.decoding.model_dump(exclude_none=True))
        return decoding


class ChatCompletionRequest(OpenAIOptions):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    # refused unless empty or off: the model calls no tools and writes plain text only
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    audio: Any = None
    modalities: list[str] | None = None
    web_search_options: Any = None
    # OpenAI's service options: accepted, no effect here
    prediction: Any = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None
    prompt_cache_key: Any = None
    prompt_cache_options: Any = None
    prompt_cache_retention: Any = None
    safety_identifier: Any = None
    reasoning_effort: Any = None
    verbosity: Any = None
    moderation: Any = None

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        return _refuse_if_set(value, "the model cannot call tools or functions")

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value: Any) -> Any:
        if value not in (None, "none"):
            raise unsupported("the model cannot call tools or functions; only 'none' is accepted")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "text":
            raise unsupported("only {'type': 'text'}: the model cannot follow a JSON schema")
        return value

    @field_validator("audio", "web_search_options")
    @classmethod
    def _no_audio_or_search(cls, value: Any) -> Any:
        return _refuse_if_set(value, "audio output and web search are not supported")

    @field_validator("modalities")
    @classmethod
    def _text_modality(cls, value: list[str] | None) -> list[str] | None:
        if value and set(value) != {"text"}:
            raise unsupported("only the 'text' modality: the model writes text only")
        return value

    @model_validator(mode="after")
    def _valid(self) -> ChatCompletionRequest:
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user" or not turns[-1].text.strip():
            raise ValueError("the last non-system message must be a non-empty user message")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def logprobs_wanted(self) -> int | None:
        """How many alternatives per token to return, or None for no log-probabilities."""
        return (self.top_logprobs or 0) if self.logprobs else None

    def to_chat(self) -> ChatRequest:
        """The same request in `/v1/chat`'s shape; raises `ValidationError` when a mapped
        value is beyond the decoding bounds (say, `n`)."""
        turns = [m for m in self.messages if m.role in ("user", "assistant")]
        max_length = self.max_completion_tokens or self.max_tokens
        return ChatRequest(
            message=turns[-1].text,
            history=[Turn(role=m.role, text=m.text) for m in turns[:-1]],
            decoding=DecodingRequest(**self.overrides(max_length)),
        )


class CompletionRequest(OpenAIOptions):
    """The legacy Completions API: the prompt is the user's message, without history."""

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=MAX_LEGACY_LOGPROBS)
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        prompts = [value] if isinstance(value, str) else value
        if len(prompts) != 1:
            raise unsupported("exactly one prompt per request (send several requests)")
        if not prompts[0].strip():
            raise ValueError("the prompt must not be empty")
        return value

    @field_validator("echo", "suffix")
    @classmethod
    def _no_echo_or_suffix(cls, value: Any) -> Any:
        return _refuse_if_set(value, "echo and suffix are not supported")

    @model_validator(mode="after")
    def _best_of_is_n(self) -> CompletionRequest:
        if self.best_of is not None and self.best_of != self.choices:
            raise unsupported("best_of must equal n: candidates are not drawn and dropped")
        return self

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_chat(self) -> ChatRequest:
        """The same request in `/v1/chat`'s shape (see `ChatCompletionRequest.to_chat`)."""
        decoding = DecodingRequest(**self.overrides(self.max_tokens))
        return ChatRequest(message=self.text, decoding=decoding)

    @property
    def logprobs_wanted(self) -> int | None:
        return self.logprobs


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobOut(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprobOut]


class ChatCompletionChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
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
    logprobs: ChoiceLogprobs | None = None
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
    usage: CompletionUsage | None = None


class LegacyLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: LegacyLogprobs | None = None
    finish_reason: FinishReasonName | None = None


class TextCompletion(BaseModel):
    """A legacy completion, and (with `usage` None until the last) each streamed chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
