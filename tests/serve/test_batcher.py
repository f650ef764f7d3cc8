"""Micro-batching: who shares a batch, what a full queue and an abandoned request do, and that
batched replies are the facade's replies."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from chatbot.bot import Chatbot, Reply
from chatbot.config import DecodingConfig
from chatbot.errors import DataError
from serve.batcher import MicroBatcher, OverloadedError, batch_key
from serve.metrics import Metrics


class RecordingBot:
    """The real bot's settings and replies, recording each batch and its thread; `gate`, when
    set, holds every batch until the test opens it."""

    def __init__(self, bot: Chatbot, gate: threading.Event | None = None) -> None:
        self.bot = bot
        self.gate = gate
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()

    def settings(self, **overrides: Any) -> DecodingConfig:
        return self.bot.settings(**overrides)

    def reply_batch(
        self, messages: Sequence[str], histories: Sequence[Any], **decoding: Any
    ) -> list[Reply]:
        self.threads.add(threading.get_ident())
        if self.gate is not None:
            self.gate.wait(10)
        self.batches.append(list(messages))
        return self.bot.reply_batch(messages, histories, **decoding)


def run_with(
    bot: Any, scenario: Any, *, max_batch_size: int = 8, window_s: float = 0.05, max_queue: int = 64
) -> Any:
    async def main() -> Any:
        batcher = MicroBatcher(
            bot,
            max_batch_size=max_batch_size,
            window_s=window_s,
            max_queue=max_queue,
            metrics=Metrics(),
        )
        await batcher.start()
        try:
            return await scenario(batcher)
        finally:
            await batcher.stop()

    return asyncio.run(main())


MESSAGES = ["Hello there", "How are you?", "What is your name?", "Do you like music?"]


def test_concurrent_requests_share_one_batch_and_match_the_facade(bot: Chatbot) -> None:
    recording = RecordingBot(bot)

    async def scenario(batcher: MicroBatcher) -> list[Reply]:
        jobs = [batcher.submit(m, [], bot.settings(strategy="greedy")) for m in MESSAGES]
        return await asyncio.gather(*jobs)

    replies = run_with(recording, scenario)
    assert recording.batches == [MESSAGES]
    assert threading.get_ident() not in recording.threads  # never the event loop's thread
    for message, reply in zip(MESSAGES, replies, strict=True):
        expected = bot.reply(message, strategy="greedy")
        assert (reply.text, reply.prompt_tokens) == (expected.text, expected.prompt_tokens)


def test_requests_with_different_settings_go_in_separate_batches(bot: Chatbot) -> None:
    recording = RecordingBot(bot)
    settings = [{"strategy": "greedy"}, {"strategy": "beam", "beam_width": 2}, {}, {}]

    async def scenario(batcher: MicroBatcher) -> list[Reply]:
        jobs = [
            batcher.submit(m, [], bot.settings(**s))
            for m, s in zip(MESSAGES, settings, strict=True)
        ]
        return await asyncio.gather(*jobs)

    run_with(recording, scenario)
    default_is_greedy = bot.settings().strategy == "greedy"
    expected_batches = 2 if default_is_greedy else 3
    assert len(recording.batches) == expected_batches
    assert sorted(m for batch in recording.batches for m in batch) == sorted(MESSAGES)


def test_a_batch_is_capped_at_max_batch_size(bot: Chatbot) -> None:
    recording = RecordingBot(bot)

    async def scenario(batcher: MicroBatcher) -> None:
        await asyncio.gather(*(batcher.submit(m, [], bot.settings()) for m in MESSAGES * 2))

    run_with(recording, scenario, max_batch_size=3)
    assert [len(batch) for batch in recording.batches] == [3, 3, 2]


def test_seeded_samples_are_decoded_alone(bot: Chatbot) -> None:
    seeded = {"strategy": "sample", "seed": 7}
    assert batch_key(bot.settings(**seeded)) != batch_key(bot.settings(**seeded))
    assert batch_key(bot.settings(strategy="greedy")) == batch_key(bot.settings(strategy="greedy"))


def test_a_full_queue_refuses_at_once_with_a_retry_after(bot: Chatbot) -> None:
    gate = threading.Event()
    recording = RecordingBot(bot, gate)

    async def scenario(batcher: MicroBatcher) -> tuple[OverloadedError, bool, list[Reply]]:
        first = asyncio.ensure_future(batcher.submit("first", [], bot.settings()))
        await asyncio.sleep(0.2)  # "first" is being decoded, held by the gate
        queued = [
            asyncio.ensure_future(batcher.submit(m, [], bot.settings())) for m in MESSAGES[:2]
        ]
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as refused:
            await batcher.submit("one too many", [], bot.settings())
        held = not first.done()  # refused while the queue was still full: at once
        gate.set()
        return refused.value, held, await asyncio.gather(first, *queued)

    error, held, replies = run_with(recording, scenario, max_queue=2)
    assert held and error.retry_after >= 1
    assert "busy" in str(error) and len(replies) == 3


def test_an_abandoned_request_is_never_decoded(bot: Chatbot) -> None:
    gate = threading.Event()
    recording = RecordingBot(bot, gate)

    async def scenario(batcher: MicroBatcher) -> int:
        first = asyncio.ensure_future(batcher.submit("first", [], bot.settings()))
        await asyncio.sleep(0.2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(batcher.submit("given up", [], bot.settings()), 0.05)
        depth = batcher.depth
        gate.set()
        await first
        await asyncio.sleep(0.1)
        return depth

    assert run_with(recording, scenario) == 0
    assert recording.batches == [["first"]]


def test_one_bad_message_fails_alone(bot: Chatbot) -> None:
    async def scenario(batcher: MicroBatcher) -> list[Any]:
        jobs = [batcher.submit(m, [], bot.settings()) for m in ["Hello", "\u200b", "How are you?"]]
        return await asyncio.gather(*jobs, return_exceptions=True)

    good, bad, also_good = run_with(bot, scenario)
    assert isinstance(bad, DataError) and "empty" in str(bad)
    assert good.text == bot.reply("Hello").text
    assert also_good.text == bot.reply("How are you?").text


def test_the_dispatcher_survives_a_crashing_model(bot: Chatbot) -> None:
    class Broken(RecordingBot):
        def reply_batch(self, *args: Any, **kwargs: Any) -> list[Reply]:
            raise RuntimeError("decoder exploded")

    async def scenario(batcher: MicroBatcher) -> list[Any]:
        first = await asyncio.gather(
            batcher.submit("Hi", [], bot.settings()), return_exceptions=True
        )
        second = await asyncio.gather(
            batcher.submit("Hi", [], bot.settings()), return_exceptions=True
        )
        return [*first, *second]

    outcomes = run_with(Broken(bot), scenario)
    assert [str(o) for o in outcomes] == ["decoder exploded"] * 2
