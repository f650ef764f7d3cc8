"""The combined rules of a decoding step: which tokens may come next, and at what cost.

A step's logits first get the repetition penalty, then the presence and frequency penalties,
then the specificity weight times each token's NIDF (`chatbot.decoding.specificity`); their
log-softmax is what hypotheses are scored by. The rules then cap it: the length rules (EOS
banned before `min_length`, forced at `max_length`) and the never-generated ids from one table
row, then the n-gram and phrase bans from `chatbot.decoding.constraints`. The result,
`allowed`, is what a strategy chooses from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import tensorflow as tf

from chatbot.decoding.constraints import (
    NEVER_GENERATED,
    count_penalties,
    ngram_bans,
    phrase_bans,
    repetition_penalty,
    suffix,
)
from chatbot.decoding.kernels import NEG_INF, apply_bans
from chatbot.tokenizer import EOS_ID, SEP_ID

if TYPE_CHECKING:
    from chatbot.decoding.search import Knobs, SearchSpec


class Ruled(NamedTuple):
    log_probs: tf.Tensor  # float32 [R, V]: the model's, after the penalties
    allowed: tf.Tensor  # float32 [R, V]: the same, NEG_INF where a rule bans the token


def length_caps(vocab_size: int) -> np.ndarray:
    """float32 [4, V] upper bounds on a step's log-probabilities: NEG_INF for the ids never
    generated, and also for EOS in row 1 (before min_length), for every other id in row 2 (at
    max_length), for all ids in row 3 (both at once); 0 elsewhere, which no log-probability
    exceeds. A table of float rows because Lite applies one by a broadcast minimum far faster
    than a broadcast select (`bench/lite_ops.py`). With these two values, int8 weight
    quantization (a scale of NEG_INF / -127) keeps 0 exact and NEG_INF to within rounding."""
    ids = np.arange(vocab_size)
    never = np.isin(ids, NEVER_GENERATED)
    eos = ids == EOS_ID
    banned = np.stack([never, never | eos, never | ~eos, np.ones(vocab_size, bool)])
    return np.where(banned, NEG_INF, 0.0).astype(np.float32)


class Rules:
    """The rules of one search spec, for rows decoded from `source_ids` [R, S] (one row per
    hypothesis). n-gram blocking treats ids with the same `canonical` id [V] as one token;
    `nidf` [V] is what the specificity knob weights, needed when the spec asks for it."""

    def __init__(
        self,
        spec: SearchSpec,
        vocab_size: int,
        source_ids: tf.Tensor,
        canonical: np.ndarray | None = None,
        nidf: np.ndarray | None = None,
    ) -> None:
        if spec.weight_specificity and nidf is None:
            raise ValueError("specificity weighting needs the NIDF of every token")
        self.spec = spec
        self.vocab_size = vocab_size
        self.canonical = canonical
        self.nidf = None if nidf is None else tf.constant(nidf, tf.float32)
        self.caps = tf.constant(length_caps(vocab_size))
        # context n-grams are matched over real tokens only: ids 0..SEP_ID are special
        self.context = tf.where(source_ids > SEP_ID, source_ids, -1)

    def __call__(self, logits: tf.Tensor, tokens: tf.Tensor, step: tf.Tensor, knobs: Knobs):
        """`Ruled` for a step's `logits` [R, V], given each row's history `tokens` [R, L]
        (valid before position `step`)."""
        logits = tf.cast(logits, tf.float32)
        if self.spec.penalize_repeats:
            logits = repetition_penalty(logits, tokens, step, knobs.repetition_penalty)
        if self.spec.penalize_counts:
            logits = count_penalties(
                logits, tokens, step, knobs.presence_penalty, knobs.frequency_penalty
            )
        if self.spec.weight_specificity:
            logits = logits + knobs.specificity * self.nidf[None, :]
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        row = tf.cast(step < knobs.min_length, tf.int32) + 2 * tf.cast(
            step >= knobs.max_length, tf.int32
        )
        allowed = tf.minimum(log_probs, tf.gather(self.caps, row)[None, :])
        return Ruled(log_probs, apply_bans(allowed, self.bans(tokens, step, knobs)))

    def bans(self, tokens: tf.Tensor, step: tf.Tensor, knobs: Knobs) -> list[tf.Tensor]:
        """The float ban masks [R, V] of the spec's n-gram and phrase rules."""
        spec, bans = self.spec, []
        if spec.no_repeat_ngram:
            n = spec.no_repeat_ngram
            history = tf.where(tf.range(knobs.max_length + 1)[None, :] < step, tokens, -1)
            tail, ready = suffix(tokens, step, n - 1)
            bans.append(ngram_bans(history, tail, ready, n, self.vocab_size, self.canonical))
        if spec.block_context_ngram:
            n = spec.block_context_ngram
            tail, ready = suffix(tokens, step, n - 1)
            bans.append(ngram_bans(self.context, tail, ready, n, self.vocab_size, self.canonical))
        if spec.banned:
            bans.append(phrase_bans(tokens, step, spec.banned, self.vocab_size))
        return bans
