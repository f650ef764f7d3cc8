import math

import numpy as np
import pytest

from chatbot.config import ScheduledSamplingConfig, TrainingConfig
from chatbot.training.schedules import (
    WarmupInverseSqrt,
    learning_rate,
    teacher_forcing_probability,
)

STEPS = [0, 1, 10, 100, 1000, 10000]


def _values(config):
    return [float(teacher_forcing_probability(config, step)) for step in STEPS]


def test_none_is_always_teacher_forcing():
    assert _values(ScheduledSamplingConfig()) == [1.0] * len(STEPS)


def test_constant():
    assert _values(ScheduledSamplingConfig(schedule="constant", k=0.75)) == [0.75] * len(STEPS)


def test_linear_decays_to_the_floor():
    config = ScheduledSamplingConfig(schedule="linear", k=1.0, c=1e-3, min_teacher_forcing=0.2)
    expected = [max(0.2, 1.0 - 1e-3 * i) for i in STEPS]
    np.testing.assert_allclose(_values(config), expected, rtol=1e-6)


def test_exponential():
    config = ScheduledSamplingConfig(schedule="exponential", k=0.999)
    np.testing.assert_allclose(_values(config), [0.999**i for i in STEPS], rtol=1e-4, atol=1e-7)


def test_inverse_sigmoid():
    config = ScheduledSamplingConfig(schedule="inverse_sigmoid", k=500.0, min_teacher_forcing=0.1)
    expected = [max(0.1, 500 / (500 + math.exp(i / 500))) for i in STEPS]
    np.testing.assert_allclose(_values(config), expected, rtol=1e-5)
    assert _values(config)[-1] == pytest.approx(0.1)


def test_schedules_are_monotone_non_increasing():
    for config in [
        ScheduledSamplingConfig(schedule="linear", c=1e-4),
        ScheduledSamplingConfig(schedule="exponential", k=0.99),
        ScheduledSamplingConfig(schedule="inverse_sigmoid", k=10.0),
    ]:
        values = _values(config)
        assert values == sorted(values, reverse=True)
        assert all(0.0 <= v <= 1.0 for v in values)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schedule": "exponential", "k": 1.5}, "below 1"),
        ({"schedule": "inverse_sigmoid", "k": 0.5}, "at least 1"),
        ({"schedule": "linear", "k": 2.0}, "probability"),
    ],
)
def test_bad_k_is_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        ScheduledSamplingConfig(**changes)


def test_warmup_then_inverse_sqrt_decay():
    schedule = WarmupInverseSqrt(peak=1e-3, warmup_steps=100)
    values = {step: float(schedule(step)) for step in (0, 49, 99, 399, 9999)}
    assert values[0] == pytest.approx(1e-5)
    assert values[49] == pytest.approx(0.5e-3)
    assert values[99] == pytest.approx(1e-3)
    assert values[399] == pytest.approx(0.5e-3)
    assert values[9999] == pytest.approx(1e-4)
    assert WarmupInverseSqrt(**schedule.get_config()).get_config() == schedule.get_config()


def test_learning_rate_picks_the_configured_schedule():
    assert isinstance(learning_rate(TrainingConfig()), WarmupInverseSqrt)
    assert learning_rate(TrainingConfig(lr_schedule="plateau", learning_rate=0.01)) == 0.01
