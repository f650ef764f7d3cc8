"""`POST /v1/chat`: one reply through the `Chatbot` facade, computed in a worker thread so the
event loop keeps serving other requests, and abandoned with 504 after `request_timeout_s`."""

from __future__ import annotations

from functools import partial

import anyio
from fastapi import APIRouter, Depends, Request

from chatbot.bot import Chatbot, Reply
from serve.deps import chat_request, get_bot, get_settings
from serve.errors import ApiError
from serve.schemas import CandidateOut, ChatRequest, ChatResponse, Usage
from serve.settings import Settings

router = APIRouter(tags=["chat"])


async def reply_in_thread(bot: Chatbot, settings: Settings, body: ChatRequest) -> tuple[Reply, int]:
    """(reply, n_best) for a validated request: decoding settings checked first (422 on a bad
    merged value), then decoded off the event loop, abandoned with 504 after the timeout."""
    decoding = body.decoding.model_dump(exclude_none=True) if body.decoding else {}
    n_best = bot.settings(**decoding).n_best
    history = [turn.text for turn in body.history]
    work = partial(bot.reply, body.message, history, **decoding)
    try:
        with anyio.fail_after(settings.request_timeout_s):
            reply = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except TimeoutError:
        message = f"no reply within {settings.request_timeout_s:g} s"
        raise ApiError(504, "timeout", message) from None
    return reply, n_best


@router.post("/v1/chat")
async def chat(
    request: Request,
    body: ChatRequest = Depends(chat_request),
    bot: Chatbot = Depends(get_bot),
    settings: Settings = Depends(get_settings),
) -> ChatResponse:
    reply, n_best = await reply_in_thread(bot, settings, body)
    candidates = None
    if n_best > 1:
        candidates = [CandidateOut(text=c.text, score=c.score) for c in reply.candidates]
    return ChatResponse(
        reply=reply.text,
        candidates=candidates,
        session_id=body.session_id,
        usage=Usage(prompt_tokens=reply.prompt_tokens, reply_tokens=reply.reply_tokens),
        model=request.app.state.model_name,
    )
