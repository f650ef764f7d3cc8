"""The serving layer merges a request's decoding settings once and streams by text offsets."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from chatbot.bot import Chatbot
from serve.app import create_app

from .conftest import make_settings


class CountingBot:
    """The real bot, counting how often settings are merged."""

    def __init__(self, bot: Chatbot) -> None:
        self.bot = bot
        self.merges = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bot, name)

    def settings(self, **overrides: Any):
        self.merges += 1
        return self.bot.settings(**overrides)


def test_each_request_merges_its_settings_once(tiny_bundle, bot: Chatbot) -> None:
    counting = CountingBot(bot)
    with TestClient(create_app(make_settings(tiny_bundle), bot=counting)) as client:  # type: ignore[arg-type]
        counting.merges = 0
        assert client.post("/v1/chat", json={"message": "Hi"}).status_code == 200
        assert counting.merges == 1
        body = {"messages": [{"role": "user", "content": "Hi"}], "n": 2, "stream": True}
        assert client.post("/v1/chat/completions", json=body).status_code == 200
        assert counting.merges == 2


def test_a_stream_sends_each_tokens_text_by_its_offset(client: TestClient, bot: Chatbot) -> None:
    body = {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line][:-1]
    deltas = [json.loads(line.removeprefix("data: "))["choices"][0] for line in lines]
    reply = bot.reply("Hi", strategy="greedy")
    ends = sorted({end for end in reply.offsets if end > 0})
    expected = [reply.text[start:end] for start, end in zip([0, *ends], ends, strict=False)]
    assert [d["delta"]["content"] for d in deltas[1:-1]] == expected
    assert deltas[-1]["finish_reason"] == {0: "stop", 1: "length"}[reply.finish_reason]
