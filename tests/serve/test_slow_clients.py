"""Slow, greedy and vanishing clients against a real uvicorn server (in a thread, on a free
loopback port, with the connection options `serve()` uses): clients that trickle their headers or
body one byte at a time block nobody else; an oversized header or body is refused without being
buffered; clients that disconnect mid-stream or while their request waits in the queue leave no
queued job, batch slot or thread behind, and the server answers the next request."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from chatbot.bot import Chatbot, Reply
from serve.app import CONNECTION_LIMITS, create_app

from .conftest import make_settings

WAIT_S = 30.0
SLACK_THREADS = 3  # the worker thread pool may grow by a few with the timing of requests


@contextmanager
def live_server(app: FastAPI) -> Iterator[int]:
    """`app` under uvicorn in a thread, with `serve()`'s connection options, on a free loopback
    port bound here (so nothing else can take it in between); yields the port once started."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **CONNECTION_LIMITS)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), "uvicorn to start")
        assert thread.is_alive(), "uvicorn stopped during startup"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def http_request(method: str, path: str, body: Any = None, extra: str = "") -> bytes:
    """A whole HTTP/1.1 request as bytes, JSON body and all, to send on a raw socket; the
    server closes the connection after answering it."""
    data = b"" if body is None else json.dumps(body).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extra}"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
    return head.encode() + b"\r\n" + data


def connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def read_until(conn: socket.socket, marker: bytes) -> bytes:
    """What the server sent, up to and including `marker` (or all of it, when it closes)."""
    received = b""
    while marker not in received:
        chunk = conn.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection and read the whole response (the server closes)."""
    with connect(port) as conn:
        conn.sendall(request)
        return read_until(conn, b"\0never")


def chat_ok(port: int, message: str = "Hello, how are you today?") -> float:
    """Seconds a normal chat request took; it must succeed."""
    started = time.monotonic()
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat", json={"message": message}, timeout=WAIT_S
    )
    assert response.status_code == 200, response.text
    assert "reply" in response.json()
    return time.monotonic() - started


class GatedBot:
    """The tiny bot, with each batch held until `gate` is set and every decoded message
    recorded, so a test can keep requests waiting in the queue behind one being decoded."""

    def __init__(self, bot: Chatbot) -> None:
        self._bot = bot
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # a batch is waiting at the gate
        self.decoded: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bot, name)

    def reply_batch(
        self, messages: Sequence[str], histories: Sequence[Sequence[str]], **decoding: Any
    ) -> list[Reply]:
        self.entered.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        self.decoded.extend(messages)
        return self._bot.reply_batch(messages, histories, **decoding)


@pytest.fixture(scope="module")
def gated(bot: Chatbot) -> GatedBot:
    return GatedBot(bot)


@pytest.fixture(scope="module")
def served(tiny_bundle: Path, gated: GatedBot) -> Iterator[tuple[FastAPI, int]]:
    # a queue deep enough for the 20 requests the disconnect test parks behind a blocked batch
    settings = make_settings(tiny_bundle, max_body_bytes=64 * 1024, max_queue=32)
    app = create_app(settings, bot=gated)  # type: ignore[arg-type]
    with live_server(app) as port:
        yield app, port


@pytest.fixture
def server_errors() -> Iterator[list[logging.LogRecord]]:
    """ERROR records uvicorn logs during the test ("Exception in ASGI application", ...)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def metric(app: FastAPI, name: str, labels: dict[str, str] | None = None) -> float:
    return app.state.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def assert_quiet(app: FastAPI) -> None:
    """No request waiting for a batch, by the batcher's count and by the gauge."""
    wait_until(lambda: app.state.batcher.depth == 0, "the queue to empty", timeout=5)
    assert metric(app, "chatbot_queue_depth") == 0


def test_slow_clients_do_not_block_others(served: tuple[FastAPI, int]) -> None:
    app, port = served
    chat_ok(port)  # warm
    headers = http_request("GET", "/healthz", extra="X-Slow: " + "z" * 200 + "\r\n")
    body = http_request("POST", "/v1/chat", {"message": "Hello " + "a" * 40})
    head_end = body.index(b"\r\n\r\n") + 4
    trickles = []  # (socket, bytes still to send, one byte at a time)
    for _ in range(6):
        trickles.append([connect(port), headers])  # headers one byte at a time
        slow_body = connect(port)
        slow_body.sendall(body[:head_end])  # whole headers, then the body one byte at a time
        trickles.append([slow_body, body[head_end:]])
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.05):
            for entry in trickles:
                if len(entry[1]) > 1:  # never the last byte: the requests stay incomplete
                    entry[0].send(entry[1][:1])
                    entry[1] = entry[1][1:]

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(0.3)
        seconds = [chat_ok(port) for _ in range(3)]
        assert max(seconds) < 5.0, seconds  # ~0.1 s on an idle machine
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        stop.set()
        sender.join(timeout=5)
        for conn, _ in trickles:
            conn.close()
    assert_quiet(app)
    chat_ok(port)


def test_an_oversized_header_is_refused_not_buffered(served: tuple[FastAPI, int]) -> None:
    """uvicorn's default parser (httptools) buffered a header of any size; h11 stops at 16 KiB."""
    _, port = served
    with connect(port) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            for _ in range(64):  # a server that buffers it all takes 64 MiB and never answers
                conn.sendall(b"a" * (1 << 20))
        except OSError:
            pass  # answered 400 and closed while this was still sending
        else:
            conn.settimeout(5)
            assert conn.recv(100).startswith(b"HTTP/1.1 400 ")
    chat_ok(port)


def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    served: tuple[FastAPI, int],
) -> None:
    _, port = served
    with connect(port) as conn:
        conn.sendall(
            b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 50000000\r\n\r\n" + b'{"message": "'
        )
        response = read_until(conn, b"}}")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"] == {
        "message": "the request body is over 65536 bytes",
        "type": "too_large",
        "param": None,
        "code": None,
    }
    chat_ok(port)


def test_disconnects_mid_stream_leak_nothing(
    served: tuple[FastAPI, int], server_errors: list[logging.LogRecord]
) -> None:
    app, port = served
    request = http_request(
        "POST",
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "Hello, how are you today?"}], "stream": True},
    )
    for _ in range(2):  # complete streams first, so the worker threads exist
        assert b"data: [DONE]" in raw_exchange(port, request)
    threads = threading.active_count()
    for _ in range(20):
        with connect(port) as conn:
            conn.sendall(request)
            assert b"data: " in read_until(conn, b"data: ")
    assert_quiet(app)
    time.sleep(0.2)  # let the abandoned streams unwind
    assert threading.active_count() <= threads + SLACK_THREADS
    assert not server_errors, [r.getMessage() for r in server_errors]
    chat_ok(port)


def test_disconnects_while_queued_leave_the_queue(
    served: tuple[FastAPI, int], gated: GatedBot, server_errors: list[logging.LogRecord]
) -> None:
    app, port = served
    chat_ok(port)
    threads = threading.active_count()
    dropped = metric(app, "chatbot_rejected_requests_total", {"reason": "disconnected"})
    batches = metric(app, "chatbot_batch_size_count")
    gated.gate.clear()
    gated.entered.clear()
    outcome: list[float] = []
    blocker = threading.Thread(target=lambda: outcome.append(chat_ok(port, "blocker")))
    blocker.start()
    conns = []
    try:
        assert gated.entered.wait(WAIT_S), "the blocking request never reached the model"
        for i in range(20):  # these wait in the queue behind the blocked batch
            conn = connect(port)
            conn.sendall(http_request("POST", "/v1/chat", {"message": f"queued {i}"}))
            conns.append(conn)
            # one at a time, so the worker threads their dependencies run in are reused and
            # any thread left behind shows in the count
            wait_until(lambda: app.state.batcher.depth == len(conns), f"{i + 1} queued")
        assert metric(app, "chatbot_queue_depth") == 20
        for conn in conns:
            conn.close()
        assert_quiet(app)  # while the gate is still closed: they left, nothing decoded them
    finally:
        gated.gate.set()
        for conn in conns:
            conn.close()
        blocker.join(WAIT_S)
    assert len(outcome) == 1, "the blocking request failed"
    assert not any(message.startswith("queued") for message in gated.decoded)
    assert metric(app, "chatbot_batch_size_count") == batches + 1  # the blocker's batch only
    disconnected = metric(app, "chatbot_rejected_requests_total", {"reason": "disconnected"})
    assert disconnected == dropped + 20
    assert threading.active_count() <= threads + SLACK_THREADS
    assert not server_errors, [r.getMessage() for r in server_errors]
    chat_ok(port)
