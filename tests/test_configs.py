"""Every shipped config loads and builds a model of the documented size."""

from pathlib import Path

import pytest

from chatbot.config import load_config
from chatbot.model.seq2seq import Seq2Seq

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_config_is_valid(path):
    load_config(path)


def test_default_model_fits_the_bundle_budget():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    model = Seq2Seq(config.model, config.data.tokenizer.vocab_size)
    model.build()
    assert model.count_params() * 4 <= 25 * 1024 * 1024


def test_reference_config_has_the_pytorch_tutorial_dimensions():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "reference.yaml")
    model, data = config.model, config.data
    assert (data.tokenizer.vocab_size, model.embedding_dim, model.hidden_size) == (7800, 500, 500)
    assert (model.encoder.cell, model.encoder.layers, model.encoder.bidirectional) == (
        "gru",
        2,
        True,
    )
    assert (model.encoder.merge, model.decoder.cell, model.decoder.layers) == ("sum", "gru", 2)
    assert (model.attention, model.dropout, config.training.batch_size) == ("luong_dot", 0.1, 64)
    assert data.max_source_len == data.max_target_len == 10
