"""Schedules that depend on the training step: teacher forcing and the learning rate.

Both are pure functions of the optimizer's step counter, so they resume exactly from a
checkpoint and run inside the compiled train step.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from chatbot.config import ScheduledSamplingConfig, TrainingConfig


def teacher_forcing_probability(config: ScheduledSamplingConfig, step: Any) -> Any:
    """eps_i, the probability of feeding the true previous token at step i (see the config).

    Works on Python numbers and on tensors alike, so the value logged per epoch and the value
    used inside the compiled train step come from the same formula.
    """
    i = ops.cast(step, "float32")
    k, c, floor = config.k, config.c, config.min_teacher_forcing
    match config.schedule:
        case "none":
            return ops.ones_like(i)
        case "constant":
            return ops.full_like(i, k)
        case "linear":
            value = k - c * i
        case "exponential":
            value = ops.power(k, i)
        case "inverse_sigmoid":
            value = k / (k + ops.exp(ops.minimum(i / k, 80.0)))
    return ops.clip(value, floor, 1.0)


@keras.saving.register_keras_serializable(package="chatbot")
class WarmupInverseSqrt(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak` over `warmup_steps`, then decay as 1/sqrt(step)
    (the Transformer schedule, which needs no total step count and so survives resuming)."""

    def __init__(self, peak: float, warmup_steps: int) -> None:
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32") + 1.0
        warmup = float(max(self.warmup_steps, 1))
        return self.peak * ops.minimum(step / warmup, ops.sqrt(warmup / step))

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps}


def learning_rate(config: TrainingConfig) -> float | WarmupInverseSqrt:
    """The optimizer's learning rate: a schedule, or a float that a plateau callback lowers."""
    if config.lr_schedule == "warmup_decay":
        return WarmupInverseSqrt(config.learning_rate, config.warmup_steps)
    return config.learning_rate
