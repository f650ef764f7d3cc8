"""Server-side conversation history for clients that send a `session_id` instead of the history.

`SessionStore` is the one interface the routes use; `MemorySessionStore` (the default) keeps
sessions in this process, `serve.redis_sessions.RedisSessionStore` in Redis, shared by every
replica. A store forgets a session idle for `ttl_s` and keeps the newest `max_turns` turns of
each, so memory stays bounded whatever clients do. The methods are coroutines because a shared
store is reached over the network; a store that cannot be reached raises
`SessionStoreUnavailableError`, which the server answers with 503.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredTurn:
    role: str  # "user" or "assistant"
    text: str


class SessionStoreUnavailableError(Exception):
    """The session store cannot be reached (or refused the command); the message says why,
    for the log: it may name the store's address, so it is not sent to clients."""


class SessionStore(Protocol):
    kind: str  # what `/readyz` calls the store: "memory" or "redis"

    async def history(self, session_id: str) -> list[StoredTurn]:
        """The session's turns, oldest first (empty for an unknown or expired session)."""
        ...

    async def append(self, session_id: str, turns: Sequence[StoredTurn]) -> None:
        """Add turns to the session, all or none, creating it when new."""
        ...

    async def delete(self, session_id: str) -> bool:
        """Forget the session; False when there was none."""
        ...

    async def ping(self) -> None:
        """Return when the store answers; raise `SessionStoreUnavailableError` when it does not."""
        ...

    async def aclose(self) -> None:
        """Release the store's connections (the server is shutting down)."""
        ...


async def store_status(store: SessionStore) -> dict[str, str]:
    """What `/readyz` reports of the store: its kind, and "ok" or "unavailable"."""
    try:
        await store.ping()
    except SessionStoreUnavailableError:
        return {"store": store.kind, "status": "unavailable"}
    return {"store": store.kind, "status": "ok"}


class MemorySessionStore:
    """Sessions in this process: lost on restart and not seen by other replicas. Beyond
    `max_sessions` the least recently used session is evicted."""

    kind = "memory"

    def __init__(
        self,
        *,
        ttl_s: float,
        max_sessions: int,
        max_turns: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self.max_turns = max_turns
        self._clock = clock
        self._sessions: OrderedDict[str, tuple[float, list[StoredTurn]]] = OrderedDict()

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def _expire(self) -> None:
        """Drop idle sessions; the least recently used come first, so stop at a fresh one."""
        oldest_allowed = self._clock() - self.ttl_s
        while self._sessions:
            session_id, (touched, _) = next(iter(self._sessions.items()))
            if touched > oldest_allowed:
                break
            del self._sessions[session_id]

    async def history(self, session_id: str) -> list[StoredTurn]:
        self._expire()
        entry = self._sessions.get(session_id)
        return list(entry[1]) if entry else []

    async def append(self, session_id: str, turns: Sequence[StoredTurn]) -> None:
        self._expire()
        _, stored = self._sessions.pop(session_id, (0.0, []))
        stored = [*stored, *turns][-self.max_turns :] if self.max_turns else []
        self._sessions[session_id] = (self._clock(), stored)
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)

    async def delete(self, session_id: str) -> bool:
        self._expire()
        return self._sessions.pop(session_id, None) is not None

    async def ping(self) -> None:
        """Always answers: the sessions are in this process."""

    async def aclose(self) -> None:
        """Nothing to release."""
