"""Export a model bundle as a TensorFlow SavedModel that maps strings to strings.

The SavedModel holds the whole reply path as one graph, so TensorFlow Serving (whose official
builds include the TensorFlow Text ops) or any TensorFlow runtime can serve a bundle without
this project's Python code: text normalization, SentencePiece encoding, the context built as
`Chatbot.context_ids` builds it, the project's one decoding loop (`chatbot.decoding.search`)
with the bundle's decoding defaults, MMI reranking when the bundle sets `mmi_lambda` and
MMI-bidi reranking with the bundle's backward model when it sets `mmi_backward`, and
detokenization. Signatures (batch = B):

- `serving_default`: `message` string [B] and `history` string [B, T], the earlier turns of
  each conversation oldest first, padded with empty strings (empty turns are dropped, as the
  facade drops turns that normalize to nothing; send [[""]] * B, or shape [B, 0], for none).
  Returns `reply` string [B], `score` float32 [B] (what the reply was ranked by),
  `log_prob` float32 [B], `reply_ids` int32 [B, L] (PAD-padded) and `reply_length` int32 [B].
  A message that is empty after normalization fails the call with InvalidArgument, as the
  facade raises `DataError`.
- `context_ids`: same inputs; `source_ids` int32 [B, S] (PAD-padded) and `source_length`
  int32 [B], the encoder input the reply is decoded from.
- `normalize`: `text` string [N] -> `normalized` string [N], the bundle's normalizer.

Only the bundle's default decoding settings are exported, and only the best candidate is
returned (no `n_best` list). With the sample strategy and no `decoding.seed` in the bundle,
every call draws a fresh seed; with a seed, replies are as reproducible as the facade's.

In-graph normalization reproduces `chatbot.normalize.Normalizer` rule by rule. Python's own
Unicode tables define the dropped control/format/unassigned characters, whitespace and the
word characters of the contraction rule: they are computed here, at export time, and written
into the graph as character classes, so they agree with the exporting Python exactly.
Two steps use ICU inside TensorFlow instead of Python's `unicodedata`: NFKC
(`tensorflow_text.normalize_utf8`) and lower-casing (`tf.strings.lower`, full case mapping,
final sigma included). They agree except on characters that one Unicode version assigns and
the other does not. Inputs must be valid UTF-8.

Every tokenizer option (`data.tokenizer`: unigram, bpe, char and word models, split digits,
user-defined symbols) lives in the SentencePiece model itself, which TensorFlow Text's op reads
and applies as the Python library does (tests/test_export.py checks the ids of each).

Export on a CPU: with a GPU visible, Keras' fused recurrent layers put cuDNN-only kernels in the
graph (`chatbot export` hides GPUs from its process for this reason).
"""

from __future__ import annotations

import functools
import itertools
import re
import shutil
import unicodedata
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tensorflow as tf
import tensorflow_text as tf_text

from chatbot.atomic import atomic_directory
from chatbot.bot import Chatbot
from chatbot.bundle import CARD, CONFIG
from chatbot.config import DecodingConfig, NormalizerConfig
from chatbot.decoding.kernels import NEG_INF, is_possible
from chatbot.decoding.search import decode
from chatbot.decoding.strategies import gnmt_penalty
from chatbot.errors import ConfigError, DataError
from chatbot.normalize import QUOTES
from chatbot.tokenizer import EOS_ID, MARK, PAD_ID, SEP_ID

SIGNATURES = ("serving_default", "context_ids", "normalize")
_STRINGS = tf.TensorSpec([None], tf.string)
_MESSAGE = tf.TensorSpec([None], tf.string, name="message")
_HISTORY = tf.TensorSpec([None, None], tf.string, name="history")
_DROPPED = {"Cc", "Cf", "Co", "Cn"}  # and Cs, surrogates, which UTF-8 cannot hold


@functools.cache
def _code_points() -> tuple[str, str]:
    """Every code point but the surrogates (never in UTF-8), as the runs below and above them."""
    return "".join(map(chr, range(0xD800))), "".join(map(chr, range(0xE000, 0x110000)))


def _char_class(matches: Callable[[str], Iterable[tuple[int, int]]]) -> str:
    """An RE2 character class from the (start, end) offsets `matches` finds in each run."""
    parts = []
    for offset, run in zip((0, 0xE000), _code_points(), strict=True):
        for start, end in matches(run):
            first, last = offset + start, offset + end - 1
            parts.append(f"\\x{{{first:x}}}" + (f"-\\x{{{last:x}}}" if last > first else ""))
    return "[" + "".join(parts) + "]"


def _matching(pattern: str) -> Callable[[str], Iterable[tuple[int, int]]]:
    return lambda run: (match.span() for match in re.finditer(pattern + "+", run))


def _dropped(run: str) -> Iterable[tuple[int, int]]:
    """Where `Normalizer` drops characters: control, format, private and unassigned ones."""
    position = 0
    for dropped, chars in itertools.groupby(
        run, lambda char: unicodedata.category(char) in _DROPPED and not char.isspace()
    ):
        size = sum(1 for _ in chars)
        if dropped:
            yield position, position + size
        position += size


@functools.cache
def _classes() -> dict[str, str]:
    """Python's whitespace (`\\s`, which is `str.isspace`), word characters (`\\w`, Unicode) and
    the characters `Normalizer` drops, as RE2 classes (computed once, in about a second)."""
    return {
        "space": _char_class(_matching(r"\s")),
        "word": _char_class(_matching(r"\w")),
        "not_word": _char_class(_matching(r"\W")),
        "dropped": _char_class(_dropped),
    }


def _quote_class(target: str) -> str:
    sources = sorted(chr(code) for code, value in QUOTES.items() if value == target)
    return "[" + "".join(f"\\x{{{ord(char):x}}}" for char in sources) + "]"


def squeeze_spaces(text: tf.Tensor) -> tf.Tensor:
    """`" ".join(text.split())` in-graph: whitespace runs become one space, ends are stripped."""
    text = tf.strings.regex_replace(text, _classes()["space"] + "+", " ")
    return tf.strings.regex_replace(text, "^ | $", "")


def unmark_spaces_graph(text: tf.Tensor) -> tf.Tensor:
    """`chatbot.tokenizer.unmark_spaces` but for the leading space, which `squeeze_spaces`
    strips: word-boundary marks that a word model's byte fallback spelled out become spaces."""
    return tf.strings.regex_replace(text, MARK, " ")


def normalize_graph(text: tf.Tensor, config: NormalizerConfig) -> tf.Tensor:
    """`Normalizer(config)(text)` for a string tensor, step for step (see the module docs)."""
    if config.nfkc:
        text = tf_text.normalize_utf8(text, "NFKC")
    if config.lowercase:
        # tf.strings.lower stops at a NUL; U+0001 behaves the same in lower-casing and NFKC,
        # and both are dropped below.
        text = tf.strings.regex_replace(text, r"\x00", "\x01")
        text = tf.strings.lower(text, encoding="utf-8")
        if config.nfkc:
            text = tf_text.normalize_utf8(text, "NFKC")
    text = tf.strings.regex_replace(text, _classes()["dropped"], "")
    text = squeeze_spaces(text)
    text = tf.strings.regex_replace(text, "\u2581", "_")
    if config.unify_quotes:
        text = tf.strings.regex_replace(text, _quote_class("'"), "'")
        text = tf.strings.regex_replace(text, _quote_class('"'), '"')
    if config.detokenize_punctuation:
        # RE2 has neither look-ahead nor a Unicode `\b`: the character after the contraction
        # is matched (a non-word one, or the end) and written back.
        word, not_word = _classes()["word"], _classes()["not_word"]
        text = tf.strings.regex_replace(
            text, f"({word}) ?' ?((?i:s|m|d|t|re|ve|ll))({not_word}|$)", r"\1'\2\3"
        )
        for ending in ("Ve", "Re", "Ll"):
            text = tf.strings.regex_replace(
                text, f"({word})'{ending}({not_word}|$)", f"\\1'{ending.lower()}\\2"
            )
        text = tf.strings.regex_replace(text, r" +([.,!?;:%)\]}]|\.\.\.)", r"\1")
        text = tf.strings.regex_replace(text, "([(\\[{$£€¥]) +", r"\1")
    return text


def _refuse_unexportable(settings: DecodingConfig) -> None:
    """Refuse bundle defaults the SavedModel's graph cannot honour, naming the setting
    (requests to `chatbot serve` can still use every one of them)."""
    problems = {  # the setting, its YAML value that turns it off, why it cannot be exported
        "stop": ("[]", "stop sequences cut the detokenized text, which its graph does not"),
        "logprobs": ("null", "its signature returns no per-token log-probabilities"),
        "reply_source": ("generate", "its graph generates replies and holds no reply bank"),
    }
    for name, (off, why) in problems.items():
        if getattr(settings, name) != DecodingConfig.model_fields[name].default:
            raise ConfigError(
                f"export: the bundle's decoding defaults set {name}, but {why}; set "
                f"decoding.{name} to {off} in its config.yaml to export it (requests to "
                "`chatbot serve` can still use it)"
            )


class ExportedChatbot(tf.Module):
    """The exported graph: the bundle's model and tokenizer, and the three signatures."""

    def __init__(self, bot: Chatbot) -> None:
        super().__init__(name="chatbot")
        self.model = bot.bundle.model
        # Each tokenizer has its own name: two unnamed ones come back from the SavedModel as
        # one model (the backward model then read the forward model's ids).
        self.tokenizer = tf_text.SentencepieceTokenizer(
            model=bot.tokenizer.model_proto, name="tokenizer"
        )
        self._bot = bot
        self._settings = bot.settings()
        _refuse_unexportable(self._settings)
        if self._settings.mmi_backward:  # settings() has checked there is a backward model
            assert bot.backward is not None
            self.backward_model = bot.backward.bundle.model
            self.backward_tokenizer = tf_text.SentencepieceTokenizer(
                model=bot.backward.tokenizer.model_proto, name="backward_tokenizer"
            )
        # The graph has no Python control flow on tensors (the loop is an explicit
        # tf.while_loop), so AutoGraph is not needed, and skipping it makes export faster.
        self.normalize = tf.function(self._normalize, input_signature=[_STRINGS], autograph=False)
        signature = [_MESSAGE, _HISTORY]
        self.context_ids = tf.function(
            self._context_ids, input_signature=signature, autograph=False
        )
        self.reply = tf.function(self._reply, input_signature=signature, autograph=False)

    def _normalize(self, text: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"normalized": normalize_graph(text, self._bot.config.data.normalizer)}

    def _context(self, message: tf.Tensor, history: tf.Tensor) -> tf.RaggedTensor:
        """The source ids of each conversation, built as `Chatbot.context_ids` builds them."""
        data = self._bot.config.data
        turns = tf.concat([history, message[:, None]], axis=1)
        cleaned = normalize_graph(tf.reshape(turns, [-1]), data.normalizer)
        cleaned = tf.reshape(cleaned, tf.shape(turns))
        tf.debugging.assert_equal(
            tf.reduce_all(cleaned[:, -1] != ""),
            True,
            message="the message is empty (after normalization)",
        )
        kept = tf.ragged.boolean_mask(cleaned, cleaned != "")[:, -data.history :]
        pieces = self.tokenizer.tokenize(kept.values)  # [turns, (ids)]
        pieces = tf.concat([pieces, tf.fill([pieces.nrows(), 1], SEP_ID)], axis=1)
        joined = tf.RaggedTensor.from_row_splits(pieces, kept.row_splits).merge_dims(1, 2)
        ends = tf.fill([joined.nrows(), 1], EOS_ID)
        joined = tf.concat([joined[:, :-1], ends], axis=1)  # the last SEP becomes EOS
        return joined[:, -data.max_source_len :]

    def _context_ids(self, message: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        ids = self._context(message, history)
        length = tf.cast(ids.row_lengths(), tf.int32)
        return {"source_ids": ids.to_tensor(PAD_ID), "source_length": length}

    def _reply(self, message: tf.Tensor, history: tf.Tensor) -> dict[str, tf.Tensor]:
        bot, settings = self._bot, self._settings
        source_ids = self._context(message, history).to_tensor(PAD_ID)
        spec, knobs, _ = bot.plan(settings)
        if settings.seed is None:
            knobs = knobs._replace(seed=tf.random.uniform([2], 0, 2**31 - 1, tf.int32))
        generator = bot.generator
        decoded = decode(self.model, source_ids, spec, knobs, generator.canonical, generator.nidf)
        scores = decoded.scores
        if settings.mmi_lambda:  # as Chatbot._rerank: minus lambda * log p(reply)
            batch, width = tf.shape(scores)[0], tf.shape(scores)[1]
            flat = tf.reshape(decoded.tokens, [batch * width, -1])
            empty = tf.fill([batch * width, 1], EOS_ID)
            prior = tf.reshape(generator.log_prob_graph(empty, flat), [batch, width])
            scores = decoded.log_probs - settings.mmi_lambda * prior
        if settings.mmi_backward:  # as Chatbot._rerank_scores
            if not settings.mmi_lambda:
                penalty = gnmt_penalty(decoded.lengths + 1, settings.length_penalty)
                scores = decoded.log_probs / penalty
            backward = self._backward_scores(message, decoded.tokens, decoded.lengths)
            scores = scores + settings.mmi_backward * backward
        # The best hypothesis that is not a dead end; top_k keeps the lower index on ties,
        # like the facade's stable sort.
        ranking = tf.where(is_possible(decoded.log_probs), scores, 2 * NEG_INF)
        best = tf.math.top_k(ranking, k=1).indices[:, 0]

        def pick(values: tf.Tensor) -> tf.Tensor:
            return tf.gather(values, best, axis=1, batch_dims=1)

        length = pick(decoded.lengths)
        ids = tf.RaggedTensor.from_tensor(pick(decoded.tokens), lengths=length)
        return {
            "reply": squeeze_spaces(self.tokenizer.detokenize(ids)),
            "score": pick(scores),
            "log_prob": pick(decoded.log_probs),
            "reply_ids": ids.to_tensor(PAD_ID),
            "reply_length": length,
        }

    def _backward_scores(
        self, message: tf.Tensor, tokens: tf.Tensor, lengths: tf.Tensor
    ) -> tf.Tensor:
        """[batch, width] log p(message | candidate) per message token under the backward
        model, built as `Chatbot.backward_scores` builds it: each candidate's text is the
        backward model's one-turn context, the message its target."""
        backward = self._bot.backward
        assert backward is not None
        data = backward.config.data
        batch, width = tf.shape(tokens)[0], tf.shape(tokens)[1]
        ids = tf.RaggedTensor.from_tensor(
            tf.reshape(tokens, [batch * width, -1]), lengths=tf.reshape(lengths, [-1])
        )
        texts = normalize_graph(squeeze_spaces(self.tokenizer.detokenize(ids)), data.normalizer)
        sources = self._with_end(self.backward_tokenizer.tokenize(texts))[:, -data.max_source_len :]
        targets = self._with_end(
            self.backward_tokenizer.tokenize(normalize_graph(message, data.normalizer))
        )
        targets = tf.gather(targets, tf.repeat(tf.range(batch), width))
        log_probs = backward.generator.log_prob_graph(
            sources.to_tensor(PAD_ID), targets.to_tensor(PAD_ID)
        )
        per_token = log_probs / tf.cast(targets.row_lengths(), tf.float32)
        return tf.reshape(per_token, [batch, width])

    @staticmethod
    def _with_end(pieces: tf.RaggedTensor) -> tf.RaggedTensor:
        return tf.concat([pieces, tf.fill([pieces.nrows(), 1], EOS_ID)], axis=1)

    def signatures(self) -> dict[str, Any]:
        return {
            "serving_default": self.reply,
            "context_ids": self.context_ids,
            "normalize": self.normalize,
        }


def export_saved_model(
    bundle_path: str | Path, out_dir: str | Path, *, force: bool = False
) -> Path:
    """Write the bundle at `bundle_path` as a SavedModel at `out_dir` and return `out_dir`.

    The SavedModel is built in a temporary folder beside `out_dir` and renamed into place, so
    `out_dir` is complete or absent; an existing `out_dir` is replaced only with `force`.
    The bundle's config.yaml and card.json are copied to `assets.extra/` for provenance.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise DataError(f"{out_dir}: already exists; choose another path or pass --force")
    if tf.config.list_logical_devices("GPU"):
        warnings.warn(
            "a GPU is visible: Keras' fused recurrent layers put cuDNN kernels in the graph, so "
            "this SavedModel may need a GPU to run; for a portable one, export from a process "
            "that hides GPUs (`chatbot export` does, or set CUDA_VISIBLE_DEVICES=)",
            stacklevel=2,
        )
    bot = Chatbot.load(bundle_path)
    module = ExportedChatbot(bot)
    with atomic_directory(out_dir, overwrite=force) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=module.signatures())
        extra = tmp / "assets.extra"
        extra.mkdir()
        for name in (CONFIG, CARD):
            shutil.copyfile(Path(bundle_path) / name, extra / name)
    return out_dir
