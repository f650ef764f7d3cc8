"""`POST /v1/chat/completions` in the OpenAI Chat Completions shape, so existing OpenAI client
libraries work unchanged (point their base URL at this server). The shapes are in
`serve.protocol`, the logic in `serve.openai_serving`."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from serve.openai_serving import OpenAIServing, openai_serving
from serve.protocol import ChatCompletion, ChatCompletionRequest
from serve.schemas import error_responses

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={
        200: {
            "description": "a `chat.completion`, or with `stream` its chunks as Server-Sent Events",
            "content": {"application/json": {}, "text/event-stream": {}},
        },
        **error_responses(400, 401, 413, 422, 429, 503, 504),
    },
)
async def completions(
    body: ChatCompletionRequest, serving: OpenAIServing = Depends(openai_serving)
) -> ChatCompletion | StreamingResponse:
    return await serving.complete(body)
