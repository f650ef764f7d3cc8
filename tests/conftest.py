"""Shared fixtures: a tiny tokenizer trained once per session, and the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.config import TokenizerConfig
from chatbot.tokenizer import Tokenizer

# Property tests judge behaviour, not speed: on a loaded 2-core machine Hypothesis' own timing
# checks (a per-example deadline, "data generation too slow") fail tests that are correct.
settings.register_profile("untimed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("untimed")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

TINY_CORPUS = [
    "Hello, how are you today?",
    "I'm fine, thanks. And you?",
    "What's your favorite food?",
    "I like pizza and pasta very much.",
    "Do you want to go to the movies tonight?",
    "Sure, what time does it start?",
    "It starts at eight o'clock.",
    "Great, see you there!",
] * 10 + [f"The number is {i} and the color is {c}." for i in range(40) for c in ("red", "blue")]


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    return Tokenizer.train(TINY_CORPUS, TokenizerConfig(vocab_size=400))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real corpora folder; tests that need it are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real corpora not available: {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle trained for one epoch on three-turn dialogues (seconds; replies are poor)."""
    import json

    from chatbot.config import DataConfig, load_config
    from chatbot.prepare import prepare
    from chatbot.training.trainer import TrainOptions, train

    root = tmp_path_factory.mktemp("tiny_bundle")
    lines = [
        json.dumps(
            {"turns": [TINY_CORPUS[i % 8], TINY_CORPUS[(i + 1) % 8], TINY_CORPUS[(i + 2) % 8]]}
        )
        for i in range(40)
    ]
    (root / "chats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = DataConfig(
        history=2, max_source_len=24, valid_fraction=0.1, tokenizer={"vocab_size": 400}
    )
    prepare("jsonl", [root / "chats.jsonl"], root / "data", data)
    overrides = ["model.embedding_dim=8", "model.hidden_size=16", "model.attention_units=8"]
    overrides += ["training.epochs=1", "training.batch_size=8", "training.warmup_steps=2"]
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", overrides)
    train(config, root / "data", root / "model", TrainOptions(verbose=False))
    return root / "model"
