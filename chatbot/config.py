"""Typed configuration: plain pydantic models that reject unknown keys, so a typo in a YAML file
or a `--set` flag fails loudly with the path of the bad key."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatbot.errors import ConfigError


class StrictModel(BaseModel):
    """Base for every config section: unknown keys and wrong types are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class NormalizerConfig(StrictModel):
    """How text is cleaned before tokenization; saved with the data and the model so that
    training and serving clean text identically."""

    nfkc: bool = True
    unify_quotes: bool = True
    detokenize_punctuation: bool = True
    lowercase: bool = False


class TokenizerConfig(StrictModel):
    """SentencePiece training settings. Special ids are fixed (see `chatbot.tokenizer`)."""

    model_type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = Field(default=8000, ge=64, le=1_000_000)
    character_coverage: float = Field(default=0.9995, gt=0.0, le=1.0)
    max_sentences: int = Field(default=2_000_000, ge=1)


class DataConfig(StrictModel):
    """How dialogues become examples and examples become padded batches."""

    history: int = Field(default=2, ge=1, le=64)
    max_source_len: int = Field(default=64, ge=2, le=4096)
    max_target_len: int = Field(default=32, ge=2, le=4096)
    valid_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    seed: int = 0
    normalizer: NormalizerConfig = NormalizerConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()


def format_validation_error(error: ValidationError, *, where: str = "config") -> str:
    """One line per problem, each naming the dotted key path and what was expected."""
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: {path}: {item['msg']}")
    return "\n".join(lines)


ModelT = TypeVar("ModelT", bound="StrictModel")


def parse_config(model: type[ModelT], data: Any, *, where: str = "config") -> ModelT:
    """Validate `data` as `model`, turning pydantic's error into a `ConfigError` for people."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, where=where)) from None
