"""Dynamic micro-batching: concurrent chat requests decoded as one batch.

Requests wait in a bounded queue. The dispatcher takes the oldest one, gathers the queued
requests whose merged decoding settings equal its own (for up to `window_s`, or until
`max_batch_size`), and decodes them with one `Chatbot.reply_batch` call in a worker thread, so the
event loop never runs model code. A full queue refuses new work at once (`OverloadedError`, answered
429 with `Retry-After`), which bounds memory; a request whose caller gave up (timeout or
disconnect) is dropped before it reaches the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio

from chatbot.bot import Chatbot, Reply
from chatbot.config import DecodingConfig
from chatbot.errors import ChatbotError
from serve.metrics import Metrics


class OverloadedError(Exception):
    """The queue is full; `retry_after` is a whole number of seconds worth waiting."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(f"the server is busy ({depth} requests queued); retry later")
        self.retry_after = retry_after


@dataclass(eq=False)
class _Job:
    message: str
    history: list[str]
    settings: DecodingConfig
    key: Any
    future: asyncio.Future[Reply]
    enqueued: float = field(default_factory=time.perf_counter)


def batch_key(settings: DecodingConfig) -> Any:
    """Requests share a batch only when their merged settings are equal. A seeded sample gets
    a batch of its own: the seed drives the whole batch, and its reply must not depend on
    which other requests happened to arrive with it."""
    if settings.strategy == "sample" and settings.seed is not None:
        return object()
    return repr(sorted(settings.model_dump().items()))


class MicroBatcher:
    """Gathers concurrent requests into batches for one model; run it with `start`/`stop`."""

    def __init__(
        self,
        bot: Chatbot,
        *,
        max_batch_size: int,
        window_s: float,
        max_queue: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.bot = bot
        self.max_batch_size = max_batch_size
        self.window_s = window_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[_Job] = deque()
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not those being decoded)."""
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._dispatch(), name="micro-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._queue:
            job.future.cancel()
        self._queue.clear()

    async def submit(self, message: str, history: Sequence[str], settings: DecodingConfig) -> Reply:
        """The reply to one request with its merged decoding `settings` (`Chatbot.settings`),
        decoded in whatever batch it joins; a full queue raises `OverloadedError` at once."""
        key = batch_key(settings)
        self.check_room()
        job = _Job(
            message, list(history), settings, key, asyncio.get_running_loop().create_future()
        )
        self._queue.append(job)
        self._observe_depth()
        self._arrived.set()
        try:
            return await job.future
        finally:
            if job.future.cancelled() or not job.future.done():  # the caller gave up
                job.future.cancel()
                with contextlib.suppress(ValueError):
                    self._queue.remove(job)
                self._observe_depth()

    def check_room(self) -> None:
        """Raise `OverloadedError` while the queue is full."""
        if len(self._queue) >= self.max_queue:
            raise OverloadedError(len(self._queue), self._retry_after())

    def _retry_after(self) -> int:
        batches_ahead = len(self._queue) / self.max_batch_size + 1
        return max(1, math.ceil(batches_ahead * self._batch_seconds))

    def _observe_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(len(self._queue))

    async def _next_batch(self) -> list[_Job]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        key = self._queue[0].key
        deadline = time.perf_counter() + self.window_s
        while sum(job.key == key for job in self._queue) < self.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        batch = [job for job in self._queue if job.key == key][: self.max_batch_size]
        for job in batch:
            self._queue.remove(job)
        self._observe_depth()
        return [job for job in batch if not job.future.done()]

    async def _dispatch(self) -> None:
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            outcomes = await anyio.to_thread.run_sync(self._decode, batch)
            seconds = time.perf_counter() - started
            self._batch_seconds = 0.8 * self._batch_seconds + 0.2 * seconds
            if self.metrics is not None:
                self.metrics.observe_batch(len(batch), seconds, outcomes)
            for job, outcome in zip(batch, outcomes, strict=True):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    def _decode(self, batch: list[_Job]) -> list[Reply | BaseException]:
        """Replies for a batch, in a worker thread. One bad request (say, a message that is
        empty once normalized) must not fail the others, so a failed batch is retried one
        request at a time."""
        decode = partial(self.bot.reply_batch, settings=batch[0].settings)
        try:
            return list(decode([job.message for job in batch], [job.history for job in batch]))
        except Exception as error:
            if len(batch) == 1 or not isinstance(error, ChatbotError):
                return [error] * len(batch)
        outcomes: list[Reply | BaseException] = []
        for job in batch:
            try:
                outcomes.extend(decode([job.message], [job.history]))
            except Exception as error:
                outcomes.append(error)
        return outcomes
