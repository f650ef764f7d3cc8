"""`POST /v1/chat/completions` and the legacy `POST /v1/completions` in OpenAI's shapes, so
existing OpenAI client libraries work unchanged (point their base URL at this server). The
shapes are in `serve.protocol`, the logic in `serve.openai_serving`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from serve.openai_serving import OpenAIServing, openai_serving
from serve.protocol import ChatCompletion, ChatCompletionRequest, CompletionRequest, TextCompletion
from serve.schemas import error_responses

router = APIRouter(tags=["openai"])


def _responses(answer: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": f"a `{answer}`, or with `stream` its chunks as Server-Sent Events",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **error_responses(400, 401, 404, 413, 429, 503, 504),
    }


@router.post("/v1/chat/completions", response_model=None, responses=_responses("chat.completion"))
async def chat_completions(
    body: ChatCompletionRequest, serving: OpenAIServing = Depends(openai_serving)
) -> ChatCompletion | StreamingResponse:
    return await serving.chat(body)


@router.post("/v1/completions", response_model=None, responses=_responses("text_completion"))
async def completions(
    body: CompletionRequest, serving: OpenAIServing = Depends(openai_serving)
) -> TextCompletion | StreamingResponse:
    return await serving.complete(body)
