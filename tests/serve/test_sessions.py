"""Server-side sessions: the store's TTL and caps, and the chat route keeping history for a
client that only names its session."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.sessions import MemorySessionStore, StoredTurn


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def turns(*texts: str) -> list[StoredTurn]:
    return [StoredTurn("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]


@pytest.mark.anyio
async def test_a_session_keeps_its_newest_turns() -> None:
    store = MemorySessionStore(ttl_s=60, max_sessions=10, max_turns=3)
    await store.append("a", turns("one", "two"))
    await store.append("a", turns("three", "four"))
    assert [t.text for t in await store.history("a")] == ["two", "three", "four"]
    assert await store.history("unknown") == []


@pytest.mark.anyio
async def test_idle_sessions_expire_and_activity_keeps_them() -> None:
    clock = Clock()
    store = MemorySessionStore(ttl_s=10, max_sessions=10, max_turns=4, clock=clock)
    await store.append("idle", turns("hi"))
    await store.append("busy", turns("hi"))
    clock.now = 8
    await store.append("busy", turns("again"))
    clock.now = 12
    assert await store.history("idle") == []
    assert [t.text for t in await store.history("busy")] == ["hi", "again"]
    assert len(store) == 1


@pytest.mark.anyio
async def test_the_least_recently_used_session_is_evicted_beyond_the_cap() -> None:
    store = MemorySessionStore(ttl_s=60, max_sessions=2, max_turns=4)
    for name in ("a", "b"):
        await store.append(name, turns(name))
    await store.append("a", turns("a again"))
    await store.append("c", turns("c"))
    assert await store.history("b") == [] and len(store) == 2
    assert await store.delete("a") and not await store.delete("a")


def test_the_server_remembers_a_session(client: TestClient, bot: Chatbot) -> None:
    first = client.post("/v1/chat", json={"message": "Hello there", "session_id": "s-42"}).json()
    second = client.post("/v1/chat", json={"message": "How are you?", "session_id": "s-42"})
    expected = bot.reply("How are you?", ["Hello there", first["reply"]])
    assert second.json()["reply"] == expected.text
    assert second.json()["usage"]["prompt_tokens"] == expected.prompt_tokens

    stored = client.get("/v1/sessions/s-42").json()
    assert stored["history"] == [
        {"role": "user", "text": "Hello there"},
        {"role": "assistant", "text": first["reply"]},
        {"role": "user", "text": "How are you?"},
        {"role": "assistant", "text": expected.text},
    ]
    assert client.delete("/v1/sessions/s-42").status_code == 204
    missing = client.get("/v1/sessions/s-42")
    assert missing.status_code == 404 and "s-42" in missing.json()["error"]["message"]


def test_history_and_session_together_are_refused(client: TestClient) -> None:
    history = [{"role": "user", "text": "Hi"}]
    body = {"message": "Hello", "session_id": "s-1", "history": history}
    response = client.post("/v1/chat", json=body)
    assert response.status_code == 422
    assert "either history or session_id" in response.json()["error"]["message"]


def test_a_session_id_must_be_a_plain_token(client: TestClient) -> None:
    response = client.post("/v1/chat", json={"message": "Hello", "session_id": "../etc/passwd"})
    assert response.status_code == 422
    assert "session_id" in response.json()["error"]["message"]
    assert client.get("/v1/sessions/a%20b").status_code == 422
