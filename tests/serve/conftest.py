"""The app under test: a tiny trained bundle behind tight server limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app
from serve.settings import Settings

LIMITS = {
    "max_message_chars": 50,
    "max_history_turns": 3,
    "max_length": 16,
    "max_beam_width": 4,
    "max_n_best": 3,
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
