"""`POST /v1/chat`: one reply through the `Chatbot` facade, decoded in a micro-batch with other
concurrent requests; the logic is in `serve.serving`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serve.deps import chat_request
from serve.schemas import ChatRequest, ChatResponse, error_responses
from serve.serving import ChatServing

router = APIRouter(tags=["chat"])


@router.post("/v1/chat", responses=error_responses(400, 401, 413, 422, 429, 503, 504))
async def chat(
    body: ChatRequest = Depends(chat_request), serving: ChatServing = Depends(ChatServing)
) -> ChatResponse:
    return await serving.chat(body)
