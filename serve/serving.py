"""The serving layer between the HTTP routes and the `Chatbot` facade.

A route only parses and delegates; `ChatServing` merges the request's decoding settings with
the bundle's defaults once, queues the request in the micro-batcher (never decoding on the
event loop), gives up with 504 after `request_timeout_s` or as soon as the client disconnects,
and shapes `/v1/chat`'s answer. `serve.openai_serving` builds the OpenAI answers on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import anyio
from fastapi import Request

from chatbot.bot import Reply
from chatbot.config import DecodingConfig
from serve.batcher import MicroBatcher
from serve.deps import get_batcher
from serve.errors import ApiError
from serve.schemas import CandidateOut, ChatRequest, ChatResponse, DecodingRequest, Usage
from serve.sessions import SessionStore, StoredTurn
from serve.settings import Settings


class ChatServing:
    """Replies for one HTTP request. The batcher is looked up when first needed, so a route's
    own validation answers before a model that is still loading does (503)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.settings: Settings = request.app.state.settings
        self.metrics = request.app.state.metrics
        self.model_name: str = request.app.state.model_name
        self.model_names: frozenset[str] = request.app.state.model_names

    @property
    def batcher(self) -> MicroBatcher:
        return get_batcher(self.request)

    def decoding(self, overrides: DecodingRequest | None, **more: Any) -> DecodingConfig:
        """The bundle's decoding defaults with the request's overrides and `more` settings
        the route adds, validated (a bad merged value raises `ConfigError`, answered 422);
        503 while the model is loading."""
        given = overrides.model_dump(exclude_none=True) if overrides is not None else {}
        return self.batcher.bot.settings(**given, **more)

    async def reply(self, message: str, history: Sequence[str], decoding: DecodingConfig) -> Reply:
        """The reply once a batch has decoded it; 429 when the queue is full, 504 when no
        reply came within the timeout, 499 (sent to nobody) when the client left first."""
        batcher = self.batcher
        try:
            with anyio.fail_after(self.settings.request_timeout_s):
                reply = await self._submit_while_connected(batcher, message, history, decoding)
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc()
            message = f"no reply within {self.settings.request_timeout_s:g} s"
            raise ApiError(504, "timeout", message) from None
        if reply is None:
            self.metrics.rejected.labels("disconnected").inc()
            raise ApiError(499, "client_closed", "the client closed the connection")  # sent nowhere
        return reply

    async def chat(self, body: ChatRequest) -> ChatResponse:
        """`/v1/chat`: the reply, with the session's history when the request names one."""
        sessions: SessionStore = self.request.app.state.sessions
        if body.session_id is not None:
            history = [turn.text for turn in await sessions.history(body.session_id)]
        else:
            history = [turn.text for turn in body.history]
        decoding = self.decoding(body.decoding)
        reply = await self.reply(body.message, history, decoding)
        if body.session_id is not None:
            exchange = [StoredTurn("user", body.message), StoredTurn("assistant", reply.text)]
            await sessions.append(body.session_id, exchange)
        candidates = None
        if decoding.n_best > 1:
            candidates = [CandidateOut(text=c.text, score=c.score) for c in reply.candidates]
        return ChatResponse(
            reply=reply.text,
            candidates=candidates,
            session_id=body.session_id,
            usage=Usage(prompt_tokens=reply.prompt_tokens, reply_tokens=reply.reply_tokens),
            model=self.model_name,
        )

    async def _submit_while_connected(
        self,
        batcher: MicroBatcher,
        message: str,
        history: Sequence[str],
        decoding: DecodingConfig,
    ) -> Reply | None:
        """The batcher's reply, or None once the client has disconnected. uvicorn keeps running
        a handler whose client is gone, so without watching for `http.disconnect` a closed
        connection would keep its place in the queue and be decoded for nobody; cancelling
        `submit` takes the job out of the queue (or drops its result when it is already being
        decoded). A watcher task rather than a task group, which would wrap submit's own
        errors (429) in a group."""
        with anyio.CancelScope() as scope:
            watcher = asyncio.create_task(_cancel_on_disconnect(self.request, scope))
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
