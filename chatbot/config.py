"""Typed configuration: plain pydantic models that reject unknown keys, so a typo in a YAML file
or a `--set` flag fails loudly with the path of the bad key."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chatbot.errors import ConfigError
from chatbot.yaml_errors import yaml_problem

# Below this, dividing log-probabilities by the temperature overflows float32; it is greedy
# decoding in all but name anyway.
MIN_TEMPERATURE = 0.01
# OpenAI's bounds: at most 4 stop sequences, at most 20 alternatives per token.
MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20


# Where small decoding batches run (chatbot.decoding.generator): TensorFlow, or TensorFlow Lite
# for a single source, with the model's float32 weights or with them quantized to int8.
Runtime = Literal["tf", "lite", "lite-int8"]
RUNTIMES: tuple[Runtime, ...] = get_args(Runtime)
# How `chatbot train` runs: its tf.distribute strategy and its float precision.
DistributionStrategy = Literal["default", "mirrored", "multi_worker"]
Precision = Literal["auto", "float32", "mixed_float16"]


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


# The special pieces (chatbot.tokenizer), which no user-defined symbol may repeat.
_SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>", "<sep>")


class TokenizerConfig(StrictModel):
    """SentencePiece training settings. Special ids are fixed (see `chatbot.tokenizer`).

    - model_type: SentencePiece's `unigram` or `bpe` subwords, `char` (one piece a character)
      or `word` (one piece a whitespace-separated word; unknown words become bytes).
    - vocab_size: an upper bound: data that cannot fill it gives fewer pieces (SentencePiece's
      `hard_vocab_limit: false`), as a `char` model always does.
    - split_digits: every digit 0-9 its own piece (no multi-digit pieces), for numbers.
    - user_defined_symbols: pieces matched in the text before anything else and never split.
    The option fields postdate prepared data and bundles, whose configs lack them: their
    defaults are what those were trained with.
    """

    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    vocab_size: int = Field(default=8000, ge=64, le=1_000_000)
    character_coverage: float = Field(default=0.9995, gt=0.0, le=1.0)
    # SentencePiece's trainer needs about 1.7 KB a sampled turn (0.53 GB at 300,000), which
    # bounds prepare's memory (docs/performance.md, "Preparing at scale")
    max_sentences: int = Field(default=300_000, ge=1)
    split_digits: bool = False
    user_defined_symbols: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _options_apply(self) -> TokenizerConfig:
        for symbol in self.user_defined_symbols:
            if not symbol or any(char.isspace() or char == "\u2581" for char in symbol):
                raise ValueError(
                    f"user_defined_symbols: {symbol!r} must be non-empty, without whitespace "
                    "or \u2581 (SentencePiece's word-boundary mark)"
                )
            if symbol in _SPECIAL_PIECES:
                raise ValueError(f"user_defined_symbols: {symbol!r} is a special piece")
        if len(set(self.user_defined_symbols)) < len(self.user_defined_symbols):
            raise ValueError("user_defined_symbols: a symbol is listed twice")
        if self.model_type == "word" and (self.split_digits or self.user_defined_symbols):
            # SentencePiece's word model splits on whitespace only and looks each word up
            # whole: it ignores both options (google/sentencepiece#801 for the symbols).
            raise ValueError(
                "split_digits and user_defined_symbols have no effect on a word model, which "
                "splits at whitespace only; use model_type char, unigram or bpe"
            )
        return self


Direction = Literal["forward", "backward"]


class DataConfig(StrictModel):
    """How dialogues become examples and examples become padded batches."""

    history: int = Field(default=2, ge=1, le=64)
    max_source_len: int = Field(default=64, ge=2, le=4096)
    max_target_len: int = Field(default=32, ge=2, le=4096)
    valid_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    seed: int = 0
    # backward: each example predicts the context's last turn from the response, the model
    # p(context | reply) that MMI-bidi reranking (decoding.mmi_backward) scores replies with
    direction: Direction = "forward"
    # drop training pairs whose reply follows so many different messages that its entropy
    # exceeds this many bits ("Thank you.", "Yes."): chatbot.generic_filter; None keeps all
    max_reply_entropy: float | None = Field(default=None, ge=0.0)
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


CellType = Literal["rnn", "gru", "lstm", "lstm_peephole", "lstm_coupled"]
AttentionType = Literal["none", "bahdanau", "luong_dot", "luong_general", "luong_concat"]
Activation = Literal["tanh", "relu"]


class EncoderConfig(StrictModel):
    cell: CellType = "gru"
    layers: int = Field(default=1, ge=1, le=8)
    bidirectional: bool = True
    merge: Literal["sum", "concat"] = "sum"


class DecoderConfig(StrictModel):
    cell: CellType = "gru"
    layers: int = Field(default=1, ge=1, le=8)


class ModelConfig(StrictModel):
    """Architecture. Sizes are shared by encoder and decoder so states pass between them."""

    embedding_dim: int = Field(default=128, ge=1)
    hidden_size: int = Field(default=256, ge=1)
    encoder: EncoderConfig = EncoderConfig()
    decoder: DecoderConfig = DecoderConfig()
    rnn_activation: Activation = "tanh"
    layer_norm: bool = False
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    attention: AttentionType = "luong_general"
    attention_units: int = Field(default=128, ge=1)
    # dot and general scores divided by sqrt(hidden_size); ignored without attention, so a
    # baseline is the same config with attention "none"
    attention_scale: bool = False
    input_feeding: bool = False
    share_embeddings: bool = True
    tie_output_embedding: bool = False

    @model_validator(mode="after")
    def _dot_attention_needs_equal_sizes(self) -> ModelConfig:
        encoder = self.encoder
        if self.attention == "luong_dot" and encoder.bidirectional and encoder.merge == "concat":
            raise ValueError(
                "attention 'luong_dot' scores decoder states (hidden_size) against encoder "
                "outputs, which encoder.merge 'concat' makes 2 * hidden_size wide; use "
                "merge 'sum' or another attention"
            )
        if self.attention_scale and self.attention in ("bahdanau", "luong_concat"):
            raise ValueError(
                f"attention_scale applies to luong_dot and luong_general scores, not to "
                f"attention {self.attention!r}"
            )
        return self


class ScheduledSamplingConfig(StrictModel):
    """Bengio et al. (2015): feed the model its own sample instead of the true previous token
    with probability 1 - eps_i, where eps_i (the teacher-forcing probability) decays with the
    training step i:

    - none: eps_i = 1 (plain teacher forcing)
    - constant: eps_i = k
    - linear: eps_i = max(min_teacher_forcing, k - c * i)
    - exponential: eps_i = max(min_teacher_forcing, k ** i), with k < 1
    - inverse_sigmoid: eps_i = max(min_teacher_forcing, k / (k + exp(i / k))), with k >= 1
    """

    schedule: Literal["none", "constant", "linear", "exponential", "inverse_sigmoid"] = "none"
    k: float = Field(default=1.0, gt=0.0)
    c: float = Field(default=1e-4, ge=0.0)
    min_teacher_forcing: float = Field(default=0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _k_fits_schedule(self) -> ScheduledSamplingConfig:
        if self.schedule in ("constant", "linear") and self.k > 1:
            raise ValueError(f"k is a probability for the {self.schedule} schedule; got {self.k}")
        if self.schedule == "exponential" and self.k >= 1:
            raise ValueError(f"k must be below 1 for the exponential schedule; got {self.k}")
        if self.schedule == "inverse_sigmoid" and self.k < 1:
            raise ValueError(f"k must be at least 1 for the inverse_sigmoid schedule; got {self.k}")
        return self


class TrainingConfig(StrictModel):
    batch_size: int = Field(default=64, ge=1)
    epochs: int = Field(default=10, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    lr_schedule: Literal["constant", "warmup_decay", "plateau"] = "warmup_decay"
    warmup_steps: int = Field(default=500, ge=0)
    plateau_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    plateau_patience: int = Field(default=1, ge=0)
    clip_norm: float | None = Field(default=5.0, gt=0.0)
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0)
    # Weight of a ranking loss (chatbot/training/losses.py) that scores each example's reply
    # above `contrastive_negatives` replies of other examples in its batch and
    # `contrastive_hard_negatives` replies to the most similar messages elsewhere in the
    # training split (chatbot/training/negatives.py): the model learns to tell which reply
    # fits the context, which hits@1/K measures and the reply bank's ranking needs.
    # 0: likelihood only.
    contrastive_weight: float = Field(default=0.0, ge=0.0)
    contrastive_negatives: int = Field(default=1, ge=0, le=16)
    contrastive_hard_negatives: int = Field(default=0, ge=0, le=16)
    # Which side the negatives replace. "target": other replies to the example's context, the
    # choice a forward model makes when it ranks replies. "source": the example's reply after
    # other contexts (hard ones: the contexts of the replies most like its own), the choice a
    # backward model p(message | reply) makes in MMI-bidi, where the message is fixed and the
    # candidate replies are its sources.
    contrastive_side: Literal["target", "source"] = "target"
    early_stopping_patience: int = Field(default=3, ge=0)
    checkpoint_every_steps: int = Field(default=500, ge=1)
    keep_checkpoints: int = Field(default=3, ge=1)
    max_source_len: int | None = Field(default=None, ge=2)
    max_target_len: int | None = Field(default=None, ge=2)
    bucket_width: int = Field(default=8, ge=1)
    scheduled_sampling: ScheduledSamplingConfig = ScheduledSamplingConfig()
    seed: int = 0

    @model_validator(mode="after")
    def _ranking_has_negatives(self) -> TrainingConfig:
        if self.contrastive_weight and not (
            self.contrastive_negatives or self.contrastive_hard_negatives
        ):
            raise ValueError(
                "contrastive_weight needs negatives: set contrastive_negatives or "
                "contrastive_hard_negatives to at least 1"
            )
        return self


class DecodingConfig(StrictModel):
    """How replies are generated; a bundle's defaults, overridable per request. Each field's
    description is also its help in the CLI (`chatbot chat --help`) and the HTTP schema."""

    strategy: Literal["greedy", "beam", "sample"] = Field(
        default="greedy",
        description="how replies are chosen: greedy (the most likely token each step), beam "
        "(search over beam_width hypotheses, ranked by log-probability / GNMT length penalty) "
        "or sample (a draw after temperature, top-k and top-p filtering)",
    )
    beam_width: int = Field(default=4, ge=1, le=64, description="hypotheses kept by beam search")
    n_best: int = Field(
        default=1,
        ge=1,
        le=64,
        description="candidates returned (beam: at most beam_width; sample: the best of "
        "n_samples, or as many drawn when n_samples is not set)",
    )
    n_samples: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="replies the sample strategy draws, ranked (with MMI reranking, when set) "
        "to return the best n_best; None: n_best",
    )
    length_penalty: float = Field(
        default=0.6,
        ge=0.0,
        le=5.0,
        description="GNMT length penalty alpha (beam): scores are log-probabilities divided by "
        "((5 + length) / 6) ** alpha",
    )
    min_length: int = Field(
        default=1, ge=0, le=512, description="shortest reply in tokens (EOS is masked until then)"
    )
    max_length: int = Field(default=32, ge=1, le=512, description="longest reply in tokens")
    temperature: float = Field(
        default=1.0, ge=MIN_TEMPERATURE, le=100.0, description="sampling temperature"
    )
    top_k: int = Field(
        default=0, ge=0, le=1_000_000, description="sample from the N likeliest tokens (0: all)"
    )
    top_p: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="sample from the smallest set of tokens of probability X",
    )
    no_repeat_ngram: int = Field(
        default=0,
        ge=0,
        le=16,
        description="never repeat an n-gram of N tokens within a reply (0: off)",
    )
    block_context_ngram: int = Field(
        default=0,
        ge=0,
        le=16,
        description="never copy an n-gram of N tokens from the context (0: off)",
    )
    repetition_penalty: float = Field(
        default=1.0,
        ge=1.0,
        le=10.0,
        description="> 1 discourages tokens already in the reply (Keskar et al. 2019)",
    )
    presence_penalty: float = Field(
        default=0.0,
        ge=-2.0,
        le=2.0,
        description="subtracted from the logit of every token already in the reply (OpenAI's "
        "presence_penalty); > 0 favours new tokens",
    )
    frequency_penalty: float = Field(
        default=0.0,
        ge=-2.0,
        le=2.0,
        description="subtracted from a token's logit once per time it is already in the reply "
        "(OpenAI's frequency_penalty); > 0 discourages repeats",
    )
    specificity: float = Field(
        default=0.0,
        ge=-10.0,
        le=10.0,
        description="NIDF-weighted decoding (See et al. 2019): adds this times each token's "
        "normalized inverse document frequency over the training replies to its logit; > 0 "
        "favours rarer, more specific words, < 0 commoner ones; needs the bundle's nidf.npy",
    )
    banned_phrases: tuple[str, ...] = Field(
        default=(), description="phrases a reply may never contain (matched on tokens)"
    )
    mmi_lambda: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description="MMI reranking weight: log p(reply | context) - lambda * log p(reply), an "
        "anti-language model (Li et al. 2016); 0: off",
    )
    mmi_backward: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="MMI-bidi weight: adds it times log p(message | reply) per message token, "
        "from the bundle's backward model, to each candidate's length-normalized score (Li et "
        "al. 2016); needs several candidates and a backward/ folder; 0: off",
    )
    reply_source: Literal["generate", "retrieve", "both"] = Field(
        default="generate",
        description="where candidates come from: generate (the strategy decodes them), "
        "retrieve (the bundle's reply bank: training replies to the messages most like this "
        "one, ranked by the model; generated only when none matches) or both, ranked together; "
        "with retrieved replies every candidate is ranked by its length-normalized "
        "log-likelihood (GNMT penalty) plus the MMI terms",
    )
    retrieved: int = Field(
        default=50,
        ge=1,
        le=512,
        description="replies the reply bank offers as candidates when reply_source retrieves",
    )
    match_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=100.0,
        description="adds this times a retrieved reply's match (the TF-IDF cosine similarity, 0 "
        "to 1, between the user's message and the bank message it answered, plus the previous "
        "turns' by previous_weight) to its ranking score, so that replies to messages like the "
        "user's win more often (generated replies match 0); 0: off",
    )
    previous_weight: float = Field(
        default=0.0,
        ge=0.0,
        le=10.0,
        description="when retrieving, a bank pair's match is its message's TF-IDF similarity "
        "to the user's message plus this times its previous turn's similarity to the turn "
        "before the user's: replies to like messages in like scenes come first; 0: the "
        "message alone",
    )
    seed: int | None = Field(
        default=None,
        description="makes sampling reproducible; without it each reply draws a fresh seed",
    )
    stop: tuple[str, ...] = Field(
        default=(),
        max_length=MAX_STOP_SEQUENCES,
        description="cut each reply before the first of these texts (at most 4)",
    )
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="return each reply token's log-probability with this many likeliest "
        "alternatives (0-20); None: off",
    )

    @model_validator(mode="after")
    def _consistent(self) -> DecodingConfig:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} exceeds max_length {self.max_length}")
        if self.strategy == "beam" and self.n_best > self.beam_width:
            raise ValueError(f"n_best {self.n_best} exceeds beam_width {self.beam_width}")
        drawn = self.n_samples
        if self.strategy == "sample" and drawn is not None and self.n_best > drawn:
            raise ValueError(f"n_best {self.n_best} exceeds n_samples {drawn}")
        if any(not text for text in self.stop):
            raise ValueError("stop: a stop sequence must not be empty")
        if self.logprobs is not None and self.reply_source != "generate":
            raise ValueError(
                "logprobs: per-token log-probabilities come from the decoding loop, so they "
                "need reply_source 'generate'"
            )
        return self


class Config(StrictModel):
    """The whole tree, as in a YAML file under configs/ and inside every bundle."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    decoding: DecodingConfig = DecodingConfig()


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` laid over it, section by section (neither input is modified)."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(tree: dict[str, Any], assignments: Sequence[str]) -> dict[str, Any]:
    """Apply `key.path=value` strings (values parsed as YAML) to a nested dict, in order."""
    tree = copy.deepcopy(tree)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {assignment!r}: expected key.path=value")
        *parents, leaf = key.strip().split(".")
        node = tree
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parents[: i + 1])
                raise ConfigError(f"--set {assignment!r}: {prefix} is a value, not a section")
            node = child
        try:
            node[leaf] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {error}") from None
    return tree


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file's top-level mapping, or a ConfigError naming the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config: {error}") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as error:
        line, problem = yaml_problem(error)
        where = f"{path}:{line}" if line is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return tree


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then the YAML file, then `--set` overrides, validated as one `Config`."""
    tree = read_yaml(path) if path is not None else {}
    where = str(path) if path is not None else "config"
    return parse_config(Config, apply_overrides(tree, overrides), where=where)
