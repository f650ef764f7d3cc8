"""Keras callbacks for one epoch's `fit`: progress, periodic checkpoints, the time budget and
TensorBoard scalars. The trainer owns everything that spans epochs."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

log = logging.getLogger(__name__)


class StepCounter(keras.callbacks.Callback):
    """Counts the batches done in the current epoch (saved in checkpoints, so that a resumed
    run skips them) and saves a checkpoint every `every` optimizer steps."""

    def __init__(self, position: tf.Variable, every: int, save: Callable[[], None]) -> None:
        super().__init__()
        self.position = position
        self.every = every
        self.save = save

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.position.assign_add(1)
        if int(self.model.optimizer.iterations.numpy()) % self.every == 0:
            self.save()


class TimeBudget(keras.callbacks.Callback):
    """Stops training cleanly once `deadline` (a `time.monotonic()` value) has passed."""

    def __init__(self, deadline: float | None) -> None:
        super().__init__()
        self.deadline = deadline
        self.expired = False

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.expired = True
            self.model.stop_training = True


class Progress(keras.callbacks.Callback):
    """A progress bar with loss, perplexity and target tokens per second."""

    def __init__(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        super().__init__()
        self.epoch, self.epochs, self.steps, self.done = epoch, epochs, steps, done
        self.tokens = 0.0
        self.seconds = 0.0
        self._started = 0.0
        self._bar: keras.utils.Progbar | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        log.info("Epoch %d/%d", self.epoch + 1, self.epochs)
        self._bar = keras.utils.Progbar(
            self.steps, verbose=1 if sys.stderr.isatty() else 2, unit_name="batch"
        )
        self._bar.update(self.done)

    def on_train_batch_begin(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if batch:  # the first batch of a fit includes tracing and compilation
            self.seconds += time.perf_counter() - self._started
            self.tokens += float(logs.get("tokens", 0.0))
        values = [(k, float(logs[k])) for k in ("loss", "perplexity") if k in logs]
        values.append(("tok/s", self.tokens_per_second))
        assert self._bar is not None
        self._bar.update(min(self.done + batch + 1, self.steps), values=values)


class Summaries:
    """TensorBoard scalars under `log_dir`/train and `log_dir`/valid."""

    def __init__(self, log_dir: str) -> None:
        self.writers = {
            split: tf.summary.create_file_writer(f"{log_dir}/{split}")
            for split in ("train", "valid")
        }

    def write(self, split: str, step: int, values: dict[str, float]) -> None:
        with self.writers[split].as_default(step=step):
            for name, value in values.items():
                if value is not None and math.isfinite(value):
                    tf.summary.scalar(name, value)
        self.writers[split].flush()
