import pytest

from chatbot.config import DataConfig, ModelConfig, TrainingConfig, parse_config
from chatbot.errors import ConfigError


def test_defaults_are_valid_and_serializable():
    config = DataConfig()
    assert parse_config(DataConfig, config.model_dump(mode="json")) == config


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match=r"flags: tokenizer\.vocab_sise: Extra inputs"):
        parse_config(DataConfig, {"tokenizer": {"vocab_sise": 10}}, where="flags")


def test_out_of_range_value_is_named_with_the_limit():
    with pytest.raises(
        ConfigError, match=r"config: history: Input should be greater than or equal to 1"
    ):
        parse_config(DataConfig, {"history": 0})


def test_wrong_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"tokenizer\.model_type: .*'bpe', 'char' or 'word'"):
        parse_config(DataConfig, {"tokenizer": {"model_type": "wordpiece"}})


def test_attention_scale_needs_dot_or_general_scores():
    with pytest.raises(
        ConfigError, match=r"attention_scale applies to .* not to attention 'bahdanau'"
    ):
        parse_config(ModelConfig, {"attention": "bahdanau", "attention_scale": True})
    assert parse_config(ModelConfig, {"attention_scale": True}).attention_scale
    assert parse_config(ModelConfig, {"attention": "none", "attention_scale": True})


def test_a_ranking_loss_needs_negatives_of_some_kind():
    with pytest.raises(ConfigError, match=r"contrastive_weight needs negatives"):
        parse_config(TrainingConfig, {"contrastive_weight": 1.0, "contrastive_negatives": 0})
    hard = {"contrastive_weight": 1.0, "contrastive_negatives": 0, "contrastive_hard_negatives": 2}
    assert parse_config(TrainingConfig, hard).contrastive_hard_negatives == 2
    assert parse_config(TrainingConfig, {"contrastive_negatives": 0}).contrastive_weight == 0
