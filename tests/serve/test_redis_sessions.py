"""Sessions shared through Redis by real `chatbot serve` processes on one redis-server: a
conversation continues on either replica, a replica killed mid-conversation loses nothing, and
while Redis is down only requests that name a session fail (503), until it is back, with no
server restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatbot.bot import Chatbot
from serve.errors import SESSIONS_UNAVAILABLE

from .redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CHATBOT = Path(sys.executable).parent / "chatbot"
READY_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 60.0
MESSAGES = [
    "Hello, how are you today?",
    "What's your favorite food?",
    "Do you want to go to the movies tonight?",
    "Sure, what time does it start?",
]


@dataclass
class Replica:
    """One `chatbot serve` process, its port and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        url = f"http://127.0.0.1:{self.port}{path}"
        return httpx.request(method, url, json=body, timeout=REQUEST_TIMEOUT_S)

    def chat(self, message: str, session_id: str) -> httpx.Response:
        return self.request("POST", "/v1/chat", {"message": message, "session_id": session_id})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_replica(bundle: Path, redis_url: str, folder: Path) -> Replica:
    """`chatbot serve` on a free port with its sessions in Redis, decoding as the `bot` fixture
    does (TensorFlow, no XLA) so its replies can be compared with the bot's."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CHATBOT_MODEL=str(bundle),
        CHATBOT_PORT=str(port),
        CHATBOT_SESSION_STORE=redis_url,
        CHATBOT_RUNTIME="tf",
        CHATBOT_JIT_COMPILE="false",
        CHATBOT_LOG_LEVEL="warning",
    )
    log = folder / f"serve-{port}.log"
    with log.open("wb") as out:
        # cwd: a bare folder, so no repository .env is read
        process = subprocess.Popen(
            [str(CHATBOT), "serve"], env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
        )
    return Replica(process, port, log)


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        output = replica.log.read_text(errors="replace")[-5000:]
        assert replica.process.poll() is None, f"the server exited:\n{output}"
        try:
            if replica.request("GET", "/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"not ready in {READY_TIMEOUT_S:g} s:\n{output}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def replicas(
    tiny_bundle: Path, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Replica]]:
    """Two servers of the tiny bundle sharing one Redis, started together."""
    folder = tmp_path_factory.mktemp("replicas")
    started = [start_replica(tiny_bundle, redis_server.url, folder) for _ in range(2)]
    try:
        for replica in started:
            wait_ready(replica)
        yield started
    finally:
        for replica in started:
            replica.stop()


def say(
    replica: Replica, session: str, message: str, history: list[str], bot: Chatbot
) -> list[str]:
    """Send `message` in `session` to `replica`: the reply must be the bot's given the whole
    `history` (every earlier turn, whichever replica answered it). The history with it."""
    response = replica.chat(message, session)
    assert response.status_code == 200, response.text
    expected = bot.reply(message, history)
    assert response.json()["reply"] == expected.text
    assert response.json()["usage"]["prompt_tokens"] == expected.prompt_tokens
    return [*history, message, expected.text]


def assert_stored(replicas: list[Replica], session: str, history: list[str]) -> None:
    """Every replica reads the same session back: `history`, alternating user and assistant."""
    roles = ["user", "assistant"] * (len(history) // 2)
    expected = [{"role": role, "text": text} for role, text in zip(roles, history, strict=True)]
    for replica in replicas:
        stored = replica.request("GET", f"/v1/sessions/{session}")
        assert stored.status_code == 200, stored.text
        assert stored.json()["history"] == expected


def test_two_replicas_continue_one_conversation_alternately(
    replicas: list[Replica], bot: Chatbot
) -> None:
    history: list[str] = []
    for turn, message in enumerate(MESSAGES):
        history = say(replicas[turn % 2], "alternate", message, history, bot)
    assert_stored(replicas, "alternate", history)


def test_a_replica_killed_mid_conversation_loses_nothing(
    replicas: list[Replica],
    bot: Chatbot,
    tiny_bundle: Path,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """A third server takes part in the conversation and is killed (SIGKILL: no shutdown at
    all); the client's next message fails there and goes to another replica, which answers
    with every earlier turn."""
    victim = start_replica(tiny_bundle, redis_server.url, tmp_path)
    try:
        wait_ready(victim)
        history: list[str] = []
        for turn, message in enumerate(MESSAGES[:3]):
            history = say([victim, replicas[0]][turn % 2], "killed", message, history, bot)
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        with pytest.raises(httpx.TransportError):
            victim.chat(MESSAGES[3], "killed")
        history = say(replicas[0], "killed", MESSAGES[3], history, bot)
        assert_stored(replicas, "killed", history)
    finally:
        victim.stop()


def test_while_redis_is_down_only_sessions_fail_and_recover_after(
    replicas: list[Replica], redis_server: RedisServer, bot: Chatbot
) -> None:
    history = say(replicas[0], "outage", MESSAGES[0], [], bot)
    redis_server.stop()
    try:
        for replica in replicas:
            assert_sessions_unavailable(replica, "outage")
            assert_served_without_sessions(replica, history)
            ready = replica.request("GET", "/readyz")
            assert ready.status_code == 200  # still serving requests that carry their history
            assert ready.json()["sessions"] == {"store": "redis", "status": "unavailable"}
    finally:
        redis_server.start()
    for replica in replicas:
        ready = replica.request("GET", "/readyz").json()
        assert ready["sessions"] == {"store": "redis", "status": "ok"}
    # The same processes carry on with the conversation kept over the restart (Redis' AOF).
    history = say(replicas[1], "outage", MESSAGES[1], history, bot)
    history = say(replicas[0], "outage", MESSAGES[2], history, bot)
    assert_stored(replicas, "outage", history)


def assert_sessions_unavailable(replica: Replica, session: str) -> None:
    """Every request that needs the session store gets 503 in the error shape."""
    expected = {
        "message": SESSIONS_UNAVAILABLE,
        "type": "unavailable",
        "param": None,
        "code": "session_store_unavailable",
    }
    for response in (
        replica.chat(MESSAGES[1], session),
        replica.request("GET", f"/v1/sessions/{session}"),
        replica.request("DELETE", f"/v1/sessions/{session}"),
    ):
        assert response.status_code == 503, response.text
        assert response.json() == {"error": expected}


def assert_served_without_sessions(replica: Replica, history: list[str]) -> None:
    """Requests that carry their own history are answered as usual, on both APIs."""
    turns = [{"role": r, "text": t} for r, t in zip(["user", "assistant"], history, strict=True)]
    own = replica.request("POST", "/v1/chat", {"message": MESSAGES[1], "history": turns})
    assert own.status_code == 200, own.text
    messages = [{"role": t["role"], "content": t["text"]} for t in turns]
    messages.append({"role": "user", "content": MESSAGES[1]})
    openai = replica.request("POST", "/v1/chat/completions", {"messages": messages})
    assert openai.status_code == 200, openai.text
    assert openai.json()["choices"][0]["message"]["content"] == own.json()["reply"]
