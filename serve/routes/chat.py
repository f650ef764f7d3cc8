"""`POST /v1/chat`: one reply through the `Chatbot` facade, decoded in a micro-batch with other
concurrent requests (never on the event loop) and abandoned with 504 after `request_timeout_s`,
or as soon as the client disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request

from chatbot.bot import Reply
from serve.batcher import MicroBatcher
from serve.deps import chat_request, get_batcher, get_settings
from serve.errors import ApiError
from serve.schemas import CandidateOut, ChatRequest, ChatResponse, Usage, error_responses
from serve.sessions import StoredTurn
from serve.settings import Settings

router = APIRouter(tags=["chat"])


async def generate(
    request: Request, body: ChatRequest, history: Sequence[str]
) -> tuple[Reply, int]:
    """(reply, n_best) for a validated request: its decoding settings are checked first (422
    on a bad merged value), then it waits for a batch; 429 when the queue is full, 504 when no
    reply came within the timeout, 499 (sent to nobody) when the client disconnected first."""
    batcher = get_batcher(request)
    settings: Settings = request.app.state.settings
    metrics = request.app.state.metrics
    decoding = body.decoding.model_dump(exclude_none=True) if body.decoding else {}
    n_best = batcher.bot.settings(**decoding).n_best
    try:
        with anyio.fail_after(settings.request_timeout_s):
            reply = await _submit_while_connected(request, batcher, body.message, history, decoding)
    except TimeoutError:
        metrics.rejected.labels("timeout").inc()
        message = f"no reply within {settings.request_timeout_s:g} s"
        raise ApiError(504, "timeout", message) from None
    if reply is None:
        metrics.rejected.labels("disconnected").inc()
        raise ApiError(499, "client_closed", "the client closed the connection")  # sent nowhere
    return reply, n_best


async def _submit_while_connected(
    request: Request,
    batcher: MicroBatcher,
    message: str,
    history: Sequence[str],
    decoding: dict[str, Any],
) -> Reply | None:
    """The batcher's reply, or None once the client has disconnected. uvicorn keeps running a
    handler whose client is gone, so without watching for `http.disconnect` a closed connection
    would keep its place in the queue and be decoded for nobody; cancelling `submit` takes the
    job out of the queue (or drops its result when it is already being decoded). A watcher task
    rather than a task group, which would wrap submit's own errors (429, 422) in a group."""
    with anyio.CancelScope() as scope:
        watcher = asyncio.create_task(_cancel_on_disconnect(request, scope))
        try:
            return await batcher.submit(message, history, decoding)
        finally:
            watcher.cancel()
    return None


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    """Cancel `scope` when the client disconnects. The body has been read by now, so the next
    message `receive` gives is the disconnect (uvicorn's and the test client's alike)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


@router.post("/v1/chat", responses=error_responses(400, 401, 413, 422, 429, 503, 504))
async def chat(
    request: Request,
    body: ChatRequest = Depends(chat_request),
    settings: Settings = Depends(get_settings),
) -> ChatResponse:
    sessions = request.app.state.sessions
    if body.session_id is not None:
        history = [turn.text for turn in sessions.history(body.session_id)]
    else:
        history = [turn.text for turn in body.history]
    reply, n_best = await generate(request, body, history)
    if body.session_id is not None:
        exchange = [StoredTurn("user", body.message), StoredTurn("assistant", reply.text)]
        sessions.append(body.session_id, exchange)
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
