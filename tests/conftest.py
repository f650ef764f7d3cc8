"""Shared fixtures: a tiny tokenizer trained once per session, and the shared-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.config import DataConfig, TokenizerConfig
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


def train_tiny(root: Path, corpus: str, file: Path, data: DataConfig, overrides: list[str]) -> Path:
    """Prepare `file` (a `corpus` file in `root`) with the DataConfig `data`, train
    configs/tiny.yaml with `overrides` on it, and return the bundle's path."""
    from chatbot.config import load_config
    from chatbot.prepare import prepare
    from chatbot.training.trainer import TrainOptions, train

    prepare(corpus, [file], root / "data", data)
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml", overrides)
    train(config, root / "data", root / "model", TrainOptions(verbose=False))
    return root / "model"


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A bundle trained for one epoch on three-turn dialogues (seconds; replies are poor)."""
    import json

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
    overrides = ["model.embedding_dim=8", "model.hidden_size=16", "model.attention_units=8"]
    overrides += ["training.epochs=1", "training.batch_size=8", "training.warmup_steps=2"]
    return train_tiny(root, "jsonl", root / "chats.jsonl", data, overrides)


# The backward model's corpus: "pong" always answers "ping", "tock" always answers "tick".
BACKWARD_MESSAGE, BACKWARD_ANSWER, BACKWARD_OTHER = "ping", "pong", "tock"


@pytest.fixture(scope="session")
def backward_bundle(tmp_path_factory) -> Path:
    """A backward model p(message | reply) that has learned which reply follows which message
    (about 200 steps of a tiny model)."""
    import json

    root = tmp_path_factory.mktemp("backward")
    pairs = [[BACKWARD_MESSAGE, BACKWARD_ANSWER], ["tick", BACKWARD_OTHER]]
    lines = [json.dumps({"turns": pairs[i % 2]}) for i in range(400)]
    (root / "chats.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = DataConfig(direction="backward", valid_fraction=0.1, tokenizer={"vocab_size": 300})
    overrides = ["model.embedding_dim=16", "model.hidden_size=32", "model.attention_units=16"]
    overrides += ["training.epochs=5", "training.batch_size=8", "training.lr_schedule=constant"]
    overrides += ["training.learning_rate=0.02", "training.early_stopping_patience=0"]
    return train_tiny(root, "jsonl", root / "chats.jsonl", data, overrides)


@pytest.fixture(scope="session")
def bidi_bundle(tiny_bundle, backward_bundle, tmp_path_factory) -> Path:
    """The tiny bundle with a backward model in its `backward/` folder, for MMI-bidi."""
    import shutil

    path = tmp_path_factory.mktemp("bidi") / "model"
    shutil.copytree(tiny_bundle, path)
    shutil.copytree(backward_bundle, path / "backward")
    return path
