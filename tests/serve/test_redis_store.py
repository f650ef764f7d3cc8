"""`RedisSessionStore` against a real redis-server: what it writes (keys namespaced by model, a
list capped at the turn limit, an expiry at the idle TTL, all set by Redis itself), appends that
stay whole when replicas write at once, and `SessionStoreUnavailableError` when Redis is away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from pydantic import ValidationError

from serve.redis_sessions import RedisSessionStore
from serve.sessions import SessionStoreUnavailableError, StoredTurn, store_status
from serve.settings import Settings

from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio

TTL_S = 60.0


@pytest.fixture
def inspect(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an emptied Redis, to look at what the store wrote."""
    with redis_server.client() as client:
        client.flushdb()
        yield client


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisSessionStore]:
    store = RedisSessionStore.from_url(redis_server.url, namespace="tiny", ttl_s=TTL_S, max_turns=4)
    yield store
    await store.aclose()


def exchange(number: int) -> list[StoredTurn]:
    return [StoredTurn("user", f"question {number}"), StoredTurn("assistant", f"answer {number}")]


async def test_turns_read_back_under_a_key_namespaced_by_model(
    store: RedisSessionStore, inspect: redis.Redis, redis_server: RedisServer
) -> None:
    said = [StoredTurn("user", 'Hi "you" \U0001f600'), StoredTurn("assistant", "hello\nthere")]
    await store.append("s-1", said)
    assert await store.history("s-1") == said
    assert inspect.keys("*") == ["chatbot:tiny:session:s-1"]

    other = RedisSessionStore.from_url(redis_server.url, namespace="big", ttl_s=TTL_S, max_turns=4)
    try:
        assert await other.history("s-1") == []  # another model's server: not its session
        await other.append("s-1", exchange(1))
        assert await store.history("s-1") == said
    finally:
        await other.aclose()
    assert sorted(inspect.keys("*")) == ["chatbot:big:session:s-1", "chatbot:tiny:session:s-1"]


async def test_redis_keeps_the_newest_turns_and_the_idle_ttl(
    store: RedisSessionStore, inspect: redis.Redis
) -> None:
    key = store.key("s-2")
    for number in range(3):
        await store.append("s-2", exchange(number))
    assert inspect.lrange(key, 0, -1) == [
        '{"role": "user", "text": "question 1"}',
        '{"role": "assistant", "text": "answer 1"}',
        '{"role": "user", "text": "question 2"}',
        '{"role": "assistant", "text": "answer 2"}',
    ]
    assert TTL_S * 1000 - 5000 < inspect.pttl(key) <= TTL_S * 1000
    inspect.pexpire(key, 1000)
    await store.append("s-2", exchange(3))  # activity restarts the idle clock
    assert inspect.pttl(key) > TTL_S * 1000 - 5000


async def test_redis_forgets_an_idle_session(
    redis_server: RedisServer, inspect: redis.Redis
) -> None:
    store = RedisSessionStore.from_url(redis_server.url, namespace="tiny", ttl_s=0.2, max_turns=4)
    try:
        await store.append("brief", exchange(1))
        assert inspect.exists(store.key("brief"))
        await asyncio.sleep(0.5)
        assert not inspect.exists(store.key("brief"))
        assert await store.history("brief") == []
    finally:
        await store.aclose()


async def test_no_turns_are_kept_with_a_cap_of_zero(
    redis_server: RedisServer, inspect: redis.Redis
) -> None:
    store = RedisSessionStore.from_url(redis_server.url, namespace="tiny", ttl_s=TTL_S, max_turns=0)
    try:
        await store.append("none", exchange(1))
        assert await store.history("none") == [] and inspect.keys("*") == []
    finally:
        await store.aclose()


async def test_exchanges_appended_at_once_by_two_replicas_stay_whole(
    redis_server: RedisServer, inspect: redis.Redis
) -> None:
    """Two stores (two replicas' connection pools) append 60 exchanges to one session at once:
    every exchange's two turns stay side by side, and the cap holds."""
    replicas = [
        RedisSessionStore.from_url(redis_server.url, namespace="tiny", ttl_s=TTL_S, max_turns=50)
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(replicas[n % 2].append("busy", exchange(n)) for n in range(60)))
        turns = await replicas[0].history("busy")
    finally:
        for replica in replicas:
            await replica.aclose()
    assert len(turns) == 50
    pairs = list(zip(turns[::2], turns[1::2], strict=True))
    assert all(q.text.replace("question", "answer") == a.text for q, a in pairs)
    assert len({q.text for q, _ in pairs}) == 25


async def test_delete_forgets_a_session(store: RedisSessionStore, inspect: redis.Redis) -> None:
    await store.append("gone", exchange(1))
    assert await store.delete("gone")
    assert not await store.delete("gone")
    assert await store.history("gone") == [] and inspect.keys("*") == []


async def test_an_unreachable_redis_raises_unavailable() -> None:
    port = free_port()
    store = RedisSessionStore.from_url(
        f"redis://127.0.0.1:{port}/0", namespace="tiny", ttl_s=TTL_S, max_turns=4
    )
    calls = [
        lambda: store.history("s"),
        lambda: store.append("s", exchange(1)),
        lambda: store.delete("s"),
        store.ping,
    ]
    try:
        for call in calls:
            with pytest.raises(
                SessionStoreUnavailableError, match=f"connecting to 127.0.0.1:{port}"
            ):
                await call()
        assert await store_status(store) == {"store": "redis", "status": "unavailable"}
    finally:
        await store.aclose()


async def test_a_reachable_store_is_reported_ok(store: RedisSessionStore) -> None:
    assert await store_status(store) == {"store": "redis", "status": "ok"}


def test_the_setting_takes_memory_or_a_redis_url() -> None:
    assert Settings(_env_file=None).session_store == "memory"
    url = "redis://cache:6379/2"
    assert Settings(_env_file=None, session_store=url).session_store == url
    with pytest.raises(ValidationError, match="must be 'memory' or a Redis URL"):
        Settings(_env_file=None, session_store="postgres://db/sessions")
