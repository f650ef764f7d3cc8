"""The decoding loop: one `tf.while_loop` over the model's single-step function, for a batch.

As in OpenNMT-tf's `dynamic_decode` and KerasHub's samplers, the loop only advances state; a
`Strategy` (`chatbot.decoding.strategies`: greedy, sample, beam) decides which tokens come next
from what the step's `Rules` (`chatbot.decoding.rules`) allow. When beam search reorders
hypotheses, decoder states and the token history follow by a gather (reply-level n-gram
blocking needs each live hypothesis' own history every step, so the loop keeps it whole rather
than backtracking through parent pointers at the end).

Every hypothesis ends with EOS within `max_length` reply tokens (EOS is forced at the last step
and masked before `min_length`); its finish reason says which. A hypothesis' log-probability is
the sum, over its tokens and its EOS, of the model's log-softmax before any control or sampling
filter is applied, so it is exactly the teacher-forced log-likelihood of the reply when no
penalty and no specificity weight is set.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from chatbot.decoding.kernels import NEG_INF, only, row_best
from chatbot.decoding.rules import Rules
from chatbot.decoding.strategies import Selection, Strategy, strategy_for
from chatbot.model.seq2seq import Encoded, Seq2Seq, Step
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class SearchSpec:
    """What shapes the compiled loop; requests with equal specs can share one batch."""

    strategy: str = "greedy"  # greedy | sample | beam
    width: int = 1  # hypotheses per input: beam width, or number of samples
    no_repeat_ngram: int = 0
    block_context_ngram: int = 0
    banned: tuple[tuple[int, ...], ...] = ()
    penalize_repeats: bool = False
    penalize_counts: bool = False  # presence and frequency penalties
    weight_specificity: bool = False  # NIDF-weighted decoding
    logprobs: int | None = None  # per-token log-probabilities with this many alternatives
    return_attention: bool = False


class Knobs(NamedTuple):
    """Per-call numbers, passed as tensors so changing them does not recompile the loop."""

    max_length: Any
    min_length: Any
    length_penalty: Any
    temperature: Any
    top_k: Any
    top_p: Any
    repetition_penalty: Any
    presence_penalty: Any
    frequency_penalty: Any
    specificity: Any
    seed: Any  # int32 [2], for stateless sampling


# The dtypes and shapes of compiled loops' knob inputs.
KNOB_SPECS = Knobs(
    max_length=tf.TensorSpec([], tf.int32),
    min_length=tf.TensorSpec([], tf.int32),
    length_penalty=tf.TensorSpec([], tf.float32),
    temperature=tf.TensorSpec([], tf.float32),
    top_k=tf.TensorSpec([], tf.int32),
    top_p=tf.TensorSpec([], tf.float32),
    repetition_penalty=tf.TensorSpec([], tf.float32),
    presence_penalty=tf.TensorSpec([], tf.float32),
    frequency_penalty=tf.TensorSpec([], tf.float32),
    specificity=tf.TensorSpec([], tf.float32),
    seed=tf.TensorSpec([2], tf.int32),
)


class FinishReason(enum.IntEnum):
    """Why a hypothesis ended (the codes in `Decoded.finish_reasons`)."""

    EOS = 0  # the model chose EOS (or the rules left it nothing else)
    LENGTH = 1  # it reached `max_length` and EOS was forced
    STOP = 2  # cut before a stop sequence after decoding (`chatbot.stops`)


class Decoded(NamedTuple):
    tokens: Any  # int32 [B, N, L]: reply ids, EOS, then PAD
    log_probs: Any  # float32 [B, N]
    scores: Any  # float32 [B, N]: log_probs / length penalty (= log_probs unless beam)
    lengths: Any  # int32 [B, N]: reply tokens, EOS excluded
    finish_reasons: Any  # int32 [B, N]: `FinishReason` codes
    attention: Any  # float32 [B, N, L, S] when spec.return_attention, else None
    token_log_probs: Any = None  # float32 [B, N, L] when spec.logprobs is set: each token's
    top_ids: Any = None  # int32 [B, N, L, K]: the K likeliest tokens at each step
    top_log_probs: Any = None  # float32 [B, N, L, K]: and their log-probabilities


class _Loop(NamedTuple):
    step: Any
    token: Any  # [R] last chosen token
    states: Any
    attentional: Any
    tokens: Any  # [R, L] history
    log_probs: Any  # [R]
    finished: Any  # [R]
    lengths: Any  # [R] reply tokens so far (EOS excluded)
    attention: Any  # [R, L, S] or a placeholder
    token_log_probs: Any  # [R, L] or a placeholder, as the next two
    top_ids: Any  # [R, L, K]
    top_log_probs: Any  # [R, L, K]


class _Picked(NamedTuple):
    """A step's log-probabilities of each row's chosen token and of its K likeliest."""

    log_prob: Any  # [R]
    top_ids: Any  # [R, K], or None when K is 0
    top_log_probs: Any  # [R, K], or None when K is 0


def _repeat(value: Any, times: int) -> Any:
    return tf.nest.map_structure(lambda v: tf.repeat(v, times, axis=0), value)


def _repeat_encoded(encoded: Encoded, times: int) -> Encoded:
    """The encoder's outputs for `times` hypotheses per input."""
    return encoded._replace(
        memory=_repeat(encoded.memory, times),
        memory_mask=_repeat(encoded.memory_mask, times),
        keys=_repeat(encoded.keys, times) if encoded.keys is not None else None,
        states=_repeat(encoded.states, times),
    )


def decode(
    model: Seq2Seq,
    source_ids: tf.Tensor,
    spec: SearchSpec,
    knobs: Knobs,
    canonical: np.ndarray | None = None,
    nidf: np.ndarray | None = None,
) -> Decoded:
    """Decode a batch of sources [B, S]; build the graph inside a `tf.function`. n-gram
    blocking treats ids with the same `canonical` id [V] (see `Tokenizer.canonical_ids`) as
    one token; without it, only equal ids. `nidf` [V] is what `spec.weight_specificity`
    weights (`chatbot.decoding.specificity`)."""
    batch = source_ids.shape[0] or tf.shape(source_ids)[0]  # static when known: fixed shapes
    strategy = strategy_for(spec, model.vocab_size)
    rows = batch * spec.width
    length = knobs.max_length + 1  # reply tokens plus EOS
    encoded = _repeat_encoded(model.encode(source_ids), spec.width)
    rules = Rules(
        spec, model.vocab_size, tf.repeat(source_ids, spec.width, axis=0), canonical, nidf
    )
    settle = _Settler(strategy.candidates)

    def body(loop: _Loop) -> tuple[_Loop]:
        step = model.decode_step(loop.token, encoded._replace(states=loop.states), loop.attentional)
        ruled = rules(step.logits, loop.tokens, loop.step, knobs)
        values, ids = strategy.propose(ruled.allowed, knobs, loop.step)
        values, ids = settle(values, ids, ruled.log_probs, loop.finished)
        chosen = strategy.select(
            loop.log_probs,
            values,
            ids,
            finished=loop.finished,
            lengths=loop.lengths,
            knobs=knobs,
            batch=batch,
        )
        picked = _picked(ruled.log_probs, chosen, spec.logprobs)
        loop, weights = _follow(loop, step, chosen.parent, spec.return_attention)
        return (_advance(loop, chosen, weights, rows, picked),)

    source_len = tf.shape(source_ids)[1]
    attention_shape = [rows, length, source_len] if spec.return_attention else [rows, 1, 1]
    top = spec.logprobs or 0
    steps = length if spec.logprobs is not None else 1  # else 1-wide placeholders
    initial = _Loop(
        step=tf.constant(0),
        token=tf.fill([rows], BOS_ID),
        states=encoded.states,
        attentional=model.initial_attentional(rules.context),
        tokens=tf.zeros([rows, length], tf.int32),
        log_probs=strategy.initial_scores(batch),
        finished=tf.zeros([rows], tf.bool),
        lengths=tf.zeros([rows], tf.int32),
        attention=tf.zeros(attention_shape),
        token_log_probs=tf.zeros([rows, steps]),
        top_ids=tf.zeros([rows, steps, top], tf.int32),
        top_log_probs=tf.zeros([rows, steps, top]),
    )
    (final,) = tf.while_loop(
        lambda loop: (loop.step < length) & ~tf.reduce_all(loop.finished),
        body,
        (initial,),
        maximum_iterations=length,
    )
    return _ranked(final, batch, strategy, spec, knobs)


class _Settler:
    """Settles the candidates of rows the proposal does not decide, as the full vocabulary row
    would with its rules applied: a finished row only pads (at no cost), and one the rules leave
    no token ends the reply rather than emit a banned one. Done on a row's few candidates, not
    its whole vocabulary row (see `chatbot.decoding.kernels.only`)."""

    def __init__(self, candidates: int) -> None:
        self.if_finished = only(PAD_ID, candidates)
        self.if_stuck = only(EOS_ID, candidates)

    def __call__(
        self, values: tf.Tensor, ids: tf.Tensor, log_probs: tf.Tensor, finished: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        stuck_ids = self.if_stuck[1]
        stuck = row_best(values) <= NEG_INF / 2
        eos_log_prob = tf.where(stuck_ids == EOS_ID, log_probs[:, EOS_ID : EOS_ID + 1], NEG_INF)
        values = tf.where(stuck, eos_log_prob, values)
        ids = tf.where(stuck, stuck_ids, ids)
        values = tf.where(finished[:, None], self.if_finished[0], values)
        ids = tf.where(finished[:, None], self.if_finished[1], ids)
        return values, ids


def _picked(log_probs: tf.Tensor, chosen: Selection, top: int | None) -> _Picked | None:
    """The step's `log_probs` [R, V] of each row's chosen token and its `top` likeliest
    tokens, from the row each continues (None unless per-token log-probabilities are asked
    for). A finished row's PAD is recorded too, and zeroed by `_advance`."""
    if top is None:
        return None
    if chosen.parent is not None:
        log_probs = tf.gather(log_probs, chosen.parent)
    token = tf.gather(log_probs, chosen.token[:, None], axis=1, batch_dims=1)[:, 0]
    if not top:  # no alternatives: nothing to scatter into [R, L, 0]
        return _Picked(token, None, None)
    values, ids = tf.math.top_k(log_probs, k=top)
    return _Picked(token, ids, values)


def _follow(loop: _Loop, step: Step, parent: Any, with_attention: bool) -> tuple[_Loop, Any]:
    """The loop's rows after the step, reordered by `parent` when the strategy reorders them,
    and the step's attention weights in that order (None unless asked for)."""
    if parent is None:
        weights = step.weights if with_attention else None
        return loop._replace(states=step.states, attentional=step.attentional), weights
    loop = loop._replace(
        states=tf.nest.map_structure(lambda s: tf.gather(s, parent), step.states),
        attentional=tf.gather(step.attentional, parent),
        tokens=tf.gather(loop.tokens, parent),
        finished=tf.gather(loop.finished, parent),
        lengths=tf.gather(loop.lengths, parent),
        attention=tf.gather(loop.attention, parent),
        token_log_probs=tf.gather(loop.token_log_probs, parent),
        top_ids=tf.gather(loop.top_ids, parent),
        top_log_probs=tf.gather(loop.top_log_probs, parent),
    )
    return loop, tf.gather(step.weights, parent) if with_attention else None


def _advance(
    loop: _Loop, chosen: Selection, weights: Any, rows: Any, picked: _Picked | None
) -> _Loop:
    """The loop after appending each row's chosen token (PAD once a row has finished), and
    its log-probabilities when `picked` (zeros once a row has finished)."""
    t, token, was_finished = loop.step, chosen.token, loop.finished
    finished = was_finished | tf.equal(token, EOS_ID) | (chosen.log_probs <= NEG_INF / 2)
    emitted = tf.where(was_finished, PAD_ID, token)
    position = tf.stack([tf.range(rows), tf.fill([rows], t)], axis=1)
    attention = loop.attention
    if weights is not None:
        update = tf.where(was_finished[:, None], 0.0, tf.cast(weights, tf.float32))
        attention = tf.tensor_scatter_nd_update(attention, position, update)
    if picked is not None:
        loop = _record(loop, picked, position, was_finished)
    return loop._replace(
        step=t + 1,
        token=emitted,
        tokens=tf.tensor_scatter_nd_update(loop.tokens, position, emitted),
        log_probs=chosen.log_probs,
        finished=finished,
        lengths=loop.lengths + tf.cast(~was_finished & tf.not_equal(token, EOS_ID), tf.int32),
        attention=attention,
    )


def _record(loop: _Loop, picked: _Picked, position: Any, was_finished: Any) -> _Loop:
    """`loop` with the step's `picked` log-probabilities written at `position`."""
    live = tf.cast(~was_finished, tf.float32)
    loop = loop._replace(
        token_log_probs=tf.tensor_scatter_nd_update(
            loop.token_log_probs, position, picked.log_prob * live
        )
    )
    if picked.top_ids is None:
        return loop
    return loop._replace(
        top_ids=tf.tensor_scatter_nd_update(loop.top_ids, position, picked.top_ids),
        top_log_probs=tf.tensor_scatter_nd_update(
            loop.top_log_probs, position, picked.top_log_probs * live[:, None]
        ),
    )


def _ranked(final: _Loop, batch: Any, strategy: Strategy, spec: SearchSpec, knobs: Knobs):
    """Hypotheses per input, best first, by the strategy's scores."""
    width = spec.width
    log_probs = tf.reshape(final.log_probs, [batch, width])
    lengths = tf.reshape(final.lengths, [batch, width])
    scores = strategy.scores(log_probs, lengths, knobs)
    _, order = tf.math.top_k(scores, k=width)

    def arrange(value: tf.Tensor) -> tf.Tensor:
        shaped = tf.reshape(value, tf.concat([[batch, width], tf.shape(value)[1:]], 0))
        return tf.gather(shaped, order, axis=1, batch_dims=1)

    lengths = tf.gather(lengths, order, axis=1, batch_dims=1)
    return Decoded(
        tokens=arrange(final.tokens),
        log_probs=tf.gather(log_probs, order, axis=1, batch_dims=1),
        scores=tf.gather(scores, order, axis=1, batch_dims=1),
        lengths=lengths,
        finish_reasons=tf.cast(lengths >= knobs.max_length, tf.int32),
        attention=arrange(final.attention) if spec.return_attention else None,
        **(_arranged_log_probs(final, arrange) if spec.logprobs is not None else {}),
    )


def _arranged_log_probs(final: _Loop, arrange: Any) -> dict[str, Any]:
    return {
        "token_log_probs": arrange(final.token_log_probs),
        "top_ids": arrange(final.top_ids),
        "top_log_probs": arrange(final.top_log_probs),
    }


def phrase_ids(phrases: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Deduplicated, non-empty phrase id tuples, in a stable order (part of the compile key)."""
    return tuple(sorted({tuple(p) for p in phrases if p}))
