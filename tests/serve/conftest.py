"""The app under test: a tiny trained bundle behind tight server limits; a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app
from serve.settings import Settings

from .redis_server import REDIS_SERVER, RedisServer

LIMITS = {
    "max_message_chars": 50,
    "max_history_turns": 3,
    "max_length": 16,
    "max_beam_width": 4,
    "max_n_best": 3,
    "max_n_samples": 6,
}


def make_settings(bundle: Path, **changes: Any) -> Settings:
    return Settings(model=str(bundle), _env_file=None, **{**LIMITS, **changes})


@pytest.fixture(scope="module")
def bot(tiny_bundle: Path) -> Chatbot:
    return Chatbot.load(tiny_bundle)


@pytest.fixture(scope="module")
def client(tiny_bundle: Path, bot: Chatbot) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tiny_bundle), bot=bot)) as client:
        yield client


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """Async tests run on asyncio, the server's event loop (anyio's plugin would add trio)."""
    return "asyncio"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the module's tests; skipped where the binary is missing
    (a failure under CI, whose .ci/run installs Debian's redis-server)."""
    if REDIS_SERVER is None:
        message = "redis-server is not installed (Debian package redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run installs it")
        pytest.skip(message)
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
