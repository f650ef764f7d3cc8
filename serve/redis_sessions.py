"""Sessions in Redis, shared by every replica of the server (`CHATBOT_SESSION_STORE=redis://...`).

A session is one Redis list of JSON turns at `chatbot:{model}:session:{id}`, so servers of
different models can share one Redis without reading each other's conversations. An exchange is
appended in one MULTI/EXEC transaction: RPUSH of its turns, LTRIM to the newest `max_turns`,
PEXPIRE to the idle TTL. Redis itself keeps the cap and forgets an idle session, whichever
replicas are alive, and two replicas appending to one session at once never interleave their
exchanges' turns nor leave one half stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict

from redis.asyncio import Redis
from redis.exceptions import RedisError

from serve.sessions import SessionStoreUnavailableError, StoredTurn

# Seconds to connect to Redis and to wait for an answer: well under a request's timeout, so a
# request that names a session fails fast (503) when Redis cannot be reached (a refused
# connection fails at once), yet above the stalls of a busy Redis (a slow disk under its
# append-only file). The URL's `socket_timeout` and `socket_connect_timeout` query options
# override it.
TIMEOUT_S = 2.0


@contextmanager
def _unavailable_on_error() -> Iterator[None]:
    """Redis' errors (unreachable, timed out, refusing writes) as `SessionStoreUnavailableError`."""
    try:
        yield
    except RedisError as error:
        raise SessionStoreUnavailableError(f"Redis: {error}") from error


class RedisSessionStore:
    """The `SessionStore` on one Redis client (its connection pool is shared by requests)."""

    kind = "redis"

    def __init__(self, client: Redis, *, namespace: str, ttl_s: float, max_turns: int) -> None:
        self._client = client
        self._prefix = f"chatbot:{namespace}:session:"
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self.max_turns = max_turns

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str, ttl_s: float, max_turns: int
    ) -> RedisSessionStore:
        """A store on the Redis at `url` (`redis://host:port/db`). Nothing connects before the
        first command, so a server starts (and serves requests with their own history) while
        Redis is down."""
        client = Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
        )
        return cls(client, namespace=namespace, ttl_s=ttl_s, max_turns=max_turns)

    def key(self, session_id: str) -> str:
        """The Redis key of a session."""
        return self._prefix + session_id

    async def history(self, session_id: str) -> list[StoredTurn]:
        with _unavailable_on_error():
            items = await self._client.lrange(self.key(session_id), 0, -1)
        return [StoredTurn(**json.loads(item)) for item in items]

    async def append(self, session_id: str, turns: Sequence[StoredTurn]) -> None:
        if not (turns and self.max_turns):
            return  # nothing would be kept
        key = self.key(session_id)
        with _unavailable_on_error():
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *(json.dumps(asdict(turn)) for turn in turns))
                pipe.ltrim(key, -self.max_turns, -1)
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()

    async def delete(self, session_id: str) -> bool:
        with _unavailable_on_error():
            return await self._client.delete(self.key(session_id)) == 1

    async def ping(self) -> None:
        with _unavailable_on_error():
            await self._client.ping()

    async def aclose(self) -> None:
        await self._client.aclose()
