"""Tiny training runs shared by the trainer tests: a small reversal corpus and model size."""

from pathlib import Path

import numpy as np
import pytest

from chatbot.config import DataConfig
from chatbot.prepare import prepare

TINY = [
    "model.embedding_dim=8",
    "model.hidden_size=16",
    "model.attention_units=8",
    "training.batch_size=8",
    "training.epochs=2",
    "training.warmup_steps=2",
    "training.checkpoint_every_steps=3",
]
WORDS = ["red", "blue", "green", "big", "small", "cat", "dog", "bird", "sees", "likes", "the", "a"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 tiny reversal dialogues: 48 to train on (6 batches of 8), 12 to validate on."""
    rng = np.random.default_rng(0)
    lines = []
    for _ in range(60):
        words = rng.choice(WORDS, size=rng.integers(2, 6))
        lines.append(f"{' '.join(words)}\t{' '.join(words[::-1])}")
    root = tmp_path_factory.mktemp("data")
    (root / "pairs.tsv").write_text("\n".join(lines[:48]) + "\n", encoding="utf-8")
    (root / "valid.tsv").write_text("\n".join(lines[48:]) + "\n", encoding="utf-8")
    config = DataConfig(history=1, tokenizer={"vocab_size": 300})
    prepare(
        "tsv", [root / "pairs.tsv"], root / "prepared", config, valid_inputs=[root / "valid.tsv"]
    )
    return root / "prepared"
