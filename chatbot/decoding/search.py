"""The decoding loop: one `tf.while_loop` over the model's single-step function, for a batch.

Like OpenNMT-tf's `dynamic_decode` and KerasHub's samplers, one loop owns the bookkeeping and
a strategy only decides which tokens come next:
- greedy: the most likely token (one hypothesis per input);
- sample: a draw after temperature, top-k and top-p filtering (n independent hypotheses);
- beam: the best `beam_width` continuations over all hypotheses of an input, ranked by
  log-probability divided by the GNMT length penalty ((5 + length) / 6) ** alpha. Decoder states
  are reordered by gathering the surviving hypotheses' rows; the token history is reordered the
  same way (reply-level n-gram blocking needs each live hypothesis' own history every step, so
  the loop keeps it whole rather than backtracking through parent pointers at the end).

Each row first proposes candidates, its best `width` tokens for beam search and its one choice
otherwise; finished rows and rows the rules leave without a token are settled on those few
candidates rather than on whole vocabulary rows, and beam search then ranks width * width
candidates per input rather than width * vocabulary entries. The result is the same, token
for token, as ranking the full rows.

Every hypothesis ends with EOS within `max_length` reply tokens (EOS is forced at the last step
and masked before `min_length`). A hypothesis' log-probability is the sum, over its tokens and
its EOS, of the model's log-softmax before any control or sampling filter is applied, so it is
exactly the teacher-forced log-likelihood of the reply when no repetition penalty is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from chatbot.decoding import noise
from chatbot.decoding.constraints import (
    NEVER_GENERATED,
    ngram_bans,
    phrase_bans,
    repetition_penalty,
    suffix,
)
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID

NEG_INF = -1e9
# Tokens sorted for top-k/top-p: the head first, then (for rows whose nucleus reaches beyond it)
# the wide head, then the whole row. In the default model's sampled replies to 150 validation
# contexts (`bench/nucleus_sizes.py`), 21.8% of steps' nuclei held over 64 tokens and 1.1% over
# 1,024; TensorFlow Lite sorts 1,024 of 8,000 logits in 37 us, all of them in 494 us
# (`bench/lite_ops.py --rows 1 --vocab 8000`).
NUCLEUS_HEAD = 64
NUCLEUS_WIDE = 1024


@dataclass(frozen=True)
class SearchSpec:
    """What shapes the compiled loop; requests with equal specs can share one batch."""

    strategy: str = "greedy"  # greedy | sample | beam
    width: int = 1  # hypotheses per input: beam width, or number of samples
    no_repeat_ngram: int = 0
    block_context_ngram: int = 0
    banned: tuple[tuple[int, ...], ...] = ()
    penalize_repeats: bool = False
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
    seed=tf.TensorSpec([2], tf.int32),
)


class Decoded(NamedTuple):
    tokens: Any  # int32 [B, N, L]: reply ids, EOS, then PAD
    log_probs: Any  # float32 [B, N]
    scores: Any  # float32 [B, N]: log_probs / length penalty (= log_probs unless beam)
    lengths: Any  # int32 [B, N]: reply tokens, EOS excluded
    attention: Any  # float32 [B, N, L, S] when spec.return_attention, else None


def gnmt_penalty(length: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """Wu et al. (2016): ((5 + length) / 6) ** alpha."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def filter_for_sampling(
    log_probs: tf.Tensor, knobs: Knobs, head: int = NUCLEUS_HEAD, wide: int = NUCLEUS_WIDE
) -> tf.Tensor:
    """Temperature, then keep the top-k tokens (k = 0: all) and the smallest set whose
    probability reaches top_p (nucleus sampling, Holtzman et al. 2020).

    Sorting the whole vocabulary every step costs more than the rest of a sampled step, so
    only the `head` likeliest tokens are sorted; a row whose top-k or nucleus reaches beyond
    them (a flat distribution, a large top-k) is then sorted to `wide` tokens, and whole if
    that is not enough either, one row at a time, since few rows need it. Without top-k and
    top-p nothing is sorted."""
    logits = log_probs / knobs.temperature
    vocab_size = tf.shape(logits)[-1]
    k = tf.where(knobs.top_k > 0, tf.minimum(knobs.top_k, vocab_size), vocab_size)
    log_total = tf.reduce_logsumexp(logits, axis=-1, keepdims=True)

    def floor(ordered: tf.Tensor, log_total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The lowest kept logit per row given its likeliest logits in descending order, and
        whether they were enough to settle it."""
        width = ordered.shape[-1]
        kth = tf.gather(ordered, tf.minimum(k, width) - 1, axis=-1)[:, None]
        probs = tf.exp(ordered - log_total)
        before = tf.cumsum(probs, axis=-1, exclusive=True)  # the mass of likelier tokens
        # top_p = 1 keeps every token: summed in float32, the mass can reach 1 before the tail
        inside = (before < knobs.top_p) | (knobs.top_p >= 1.0)
        kept = tf.reduce_sum(tf.cast(inside, tf.int32), axis=-1)
        kept = tf.maximum(kept, 1)  # the likeliest token always stays, however small top_p is
        nucleus = tf.gather(ordered, kept[:, None] - 1, axis=-1, batch_dims=1)
        reached = (knobs.top_p < 1.0) & (before[:, -1] + probs[:, -1] >= knobs.top_p)
        return tf.maximum(kth, nucleus), (k <= width) | reached

    def deepen(cutoff: tf.Tensor, settled: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
        """`floor` again from the `size` likeliest logits of each row not yet settled (int32
        flags), one row at a time, since few rows need it."""
        order = tf.argsort(settled, stable=True)  # the unsettled rows first

        def row_floor(i: tf.Tensor, cutoff: tf.Tensor, settled: tf.Tensor):
            row = tf.reshape(tf.gather(order, i), [1])  # a slice would be dynamic to XLA
            ordered = tf.math.top_k(tf.gather(logits, row), size).values
            row_cutoff, row_settled = floor(ordered, tf.gather(log_total, row))
            return (
                i + 1,
                tf.tensor_scatter_nd_update(cutoff, row[:, None], row_cutoff),
                tf.tensor_scatter_nd_update(settled, row[:, None], tf.cast(row_settled, tf.int32)),
            )

        pending = tf.reduce_sum(1 - settled)
        _, cutoff, settled = tf.while_loop(
            lambda i, *_: i < pending, row_floor, (tf.constant(0), cutoff, settled)
        )
        return cutoff, settled

    def filtered() -> tf.Tensor:
        width = logits.shape[-1]
        cutoff, settled = floor(tf.math.top_k(logits, min(head, width)).values, log_total)
        settled = tf.cast(settled, tf.int32)
        # Two loops one after the other rather than a cond inside one: TensorFlow Lite's
        # converter then failed on a second program in the same process (a function name
        # clash), as a server that samples with two settings converts.
        for size in sorted({min(wide, width), width}):
            cutoff, settled = deepen(cutoff, settled, size)
        # Where logits < cutoff, ceil(clip(cutoff - logits, 0, 1)) is 1, else 0: float ops in
        # place of a comparison and a select of whole rows, which TensorFlow Lite runs slowly.
        # The scaled log-probabilities are at most 0, so the minimum keeps them otherwise.
        below = tf.math.ceil(tf.clip_by_value(cutoff - logits, 0.0, 1.0))
        return tf.minimum(logits, NEG_INF * below)

    return tf.cond((knobs.top_k <= 0) & (knobs.top_p >= 1.0), lambda: logits, filtered)


def _length_caps(vocab_size: int) -> np.ndarray:
    """float32 [4, V] upper bounds on a step's log-probabilities: NEG_INF for the ids never
    generated, and also for EOS in row 1 (before min_length), for every other id in row 2 (at
    max_length), for all ids in row 3 (both at once); 0 elsewhere, which no log-probability
    exceeds. With these two values, int8 weight quantization (a scale of NEG_INF / -127)
    keeps 0 exact and NEG_INF to within float rounding."""
    ids = np.arange(vocab_size)
    never = np.isin(ids, NEVER_GENERATED)
    eos = ids == EOS_ID
    banned = np.stack([never, never | eos, never | ~eos, np.ones(vocab_size, bool)])
    return np.where(banned, NEG_INF, 0.0).astype(np.float32)


def _only(token: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` best (log-probability, id) pairs of a row where only `token` is allowed,
    log-probability 0, in the order `tf.math.top_k` gives them: the banned ids follow at
    NEG_INF, lowest id first."""
    ids = np.array([token, *[i for i in range(count) if i != token][: count - 1]], np.int32)
    return np.where(ids == token, 0.0, NEG_INF).astype(np.float32), ids


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


def _repeat(value: Any, times: int) -> Any:
    return tf.nest.map_structure(lambda v: tf.repeat(v, times, axis=0), value)


def decode(
    model: Seq2Seq,
    source_ids: tf.Tensor,
    spec: SearchSpec,
    knobs: Knobs,
    canonical: np.ndarray | None = None,
) -> Decoded:
    """Decode a batch of sources [B, S]; build the graph inside a `tf.function`. n-gram
    blocking treats ids with the same `canonical` id [V] (see `Tokenizer.canonical_ids`) as
    one token; without it, only equal ids."""
    batch = source_ids.shape[0] or tf.shape(source_ids)[0]  # static when known: fixed shapes
    width = spec.width
    rows = batch * width
    vocab_size = model.vocab_size
    length = knobs.max_length + 1  # reply tokens plus EOS
    encoded = model.encode(source_ids)
    encoded = encoded._replace(
        memory=_repeat(encoded.memory, width),
        memory_mask=_repeat(encoded.memory_mask, width),
        keys=_repeat(encoded.keys, width) if encoded.keys is not None else None,
        states=_repeat(encoded.states, width),
    )
    context = tf.repeat(source_ids, width, axis=0)
    context = tf.where(context > SEP_ID, context, -1)  # ids 0..SEP_ID are special
    caps = tf.constant(_length_caps(vocab_size))
    candidates = min(width, vocab_size) if spec.strategy == "beam" else 1
    if_finished = _only(PAD_ID, candidates)
    if_stuck = _only(EOS_ID, candidates)
    source_len = tf.shape(source_ids)[1]
    if spec.strategy == "beam":  # all beams start equal: keep only the first at step one
        start = tf.tile(tf.concat([[0.0], tf.fill([width - 1], NEG_INF)], 0), [batch])
    else:
        start = tf.zeros([rows])

    def body(loop: _Loop) -> tuple[_Loop]:
        t = loop.step
        step = model.decode_step(loop.token, encoded._replace(states=loop.states), loop.attentional)
        logits = tf.cast(step.logits, tf.float32)
        if spec.penalize_repeats:
            logits = repetition_penalty(logits, loop.tokens, t, knobs.repetition_penalty)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        # The length rules and the never-generated ids are the same for every row: one row of
        # the caps table, applied by a broadcast minimum. TensorFlow Lite runs float ops like
        # it fast, while its broadcast selects and boolean ops cost many times more.
        cap_row = tf.cast(t < knobs.min_length, tf.int32) + 2 * tf.cast(
            t >= knobs.max_length, tf.int32
        )
        allowed = tf.minimum(log_probs, tf.gather(caps, cap_row)[None, :])
        banned = []
        if spec.no_repeat_ngram:
            n = spec.no_repeat_ngram
            history = tf.where(tf.range(length)[None, :] < t, loop.tokens, -1)
            tail, ready = suffix(loop.tokens, t, n - 1)
            banned.append(ngram_bans(history, tail, ready, n, vocab_size, canonical))
        if spec.block_context_ngram:
            n = spec.block_context_ngram
            tail, ready = suffix(loop.tokens, t, n - 1)
            banned.append(ngram_bans(context, tail, ready, n, vocab_size, canonical))
        if spec.banned:
            banned.append(phrase_bans(loop.tokens, t, spec.banned, vocab_size))
        if banned:  # NEG_INF where any rule bans a token, -0 (no cap) elsewhere
            allowed = tf.minimum(allowed, NEG_INF * tf.minimum(tf.add_n(banned), 1.0))

        # Each row proposes `candidates` tokens with their log-probabilities (best first)...
        if spec.strategy == "beam":
            values, ids = tf.math.top_k(allowed, k=candidates)
        else:
            if spec.strategy == "sample":
                ids = noise.categorical(filter_for_sampling(allowed, knobs), knobs.seed, t)
            else:
                ids = tf.argmax(allowed, axis=-1, output_type=tf.int32)
            ids = ids[:, None]
            values = tf.gather(allowed, ids, axis=1, batch_dims=1)
        # ...as the full row would with its rules applied: a finished row only pads (at no
        # cost), and one the rules leave no token ends the reply rather than emit a banned one.
        # (the best value by a reduction: a slice of top_k's output turns XLA's top-k into a
        # sort of whole rows, and 10 beam steps at the reference dimensions from 14 to 64 ms)
        stuck = tf.reduce_max(values, axis=1, keepdims=True) <= NEG_INF / 2
        eos_log_prob = tf.where(if_stuck[1] == EOS_ID, log_probs[:, EOS_ID : EOS_ID + 1], NEG_INF)
        values = tf.where(stuck, eos_log_prob, values)
        ids = tf.where(stuck, if_stuck[1], ids)
        values = tf.where(loop.finished[:, None], if_finished[0], values)
        ids = tf.where(loop.finished[:, None], if_finished[1], ids)

        if spec.strategy == "beam":
            total = loop.log_probs[:, None] + values
            grown = loop.lengths + tf.cast(~loop.finished, tf.int32)
            ranking = total / gnmt_penalty(grown + 1, knobs.length_penalty)[:, None]
            ranking = tf.reshape(ranking, [batch, width * candidates])
            _, best = tf.math.top_k(ranking, k=width)
            chosen = tf.reshape(best + tf.range(batch)[:, None] * (width * candidates), [-1])
            parent = chosen // candidates
            token = tf.gather(tf.reshape(ids, [-1]), chosen)
            new_log_probs = tf.gather(tf.reshape(total, [-1]), chosen)
            loop = loop._replace(
                states=tf.nest.map_structure(lambda s: tf.gather(s, parent), step.states),
                attentional=tf.gather(step.attentional, parent),
                tokens=tf.gather(loop.tokens, parent),
                finished=tf.gather(loop.finished, parent),
                lengths=tf.gather(loop.lengths, parent),
                attention=tf.gather(loop.attention, parent),
            )
            weights = tf.gather(step.weights, parent) if spec.return_attention else None
        else:
            token = ids[:, 0]
            new_log_probs = loop.log_probs + values[:, 0]
            loop = loop._replace(states=step.states, attentional=step.attentional)
            weights = step.weights if spec.return_attention else None

        was_finished = loop.finished
        finished = was_finished | tf.equal(token, EOS_ID) | (new_log_probs <= NEG_INF / 2)
        tokens = tf.tensor_scatter_nd_update(
            loop.tokens,
            tf.stack([tf.range(rows), tf.fill([rows], t)], axis=1),
            tf.where(was_finished, PAD_ID, token),
        )
        attention = loop.attention
        if spec.return_attention:
            update = tf.where(was_finished[:, None], 0.0, tf.cast(weights, tf.float32))
            attention = tf.tensor_scatter_nd_update(
                attention, tf.stack([tf.range(rows), tf.fill([rows], t)], axis=1), update
            )
        lengths = loop.lengths + tf.cast(~was_finished & tf.not_equal(token, EOS_ID), tf.int32)
        return (
            loop._replace(
                step=t + 1,
                token=tf.where(was_finished, PAD_ID, token),
                tokens=tokens,
                log_probs=new_log_probs,
                finished=finished,
                lengths=lengths,
                attention=attention,
            ),
        )

    attention_shape = [rows, length, source_len] if spec.return_attention else [rows, 1, 1]
    initial = _Loop(
        step=tf.constant(0),
        token=tf.fill([rows], BOS_ID),
        states=encoded.states,
        attentional=model.initial_attentional(context),
        tokens=tf.zeros([rows, length], tf.int32),
        log_probs=start,
        finished=tf.zeros([rows], tf.bool),
        lengths=tf.zeros([rows], tf.int32),
        attention=tf.zeros(attention_shape),
    )
    (final,) = tf.while_loop(
        lambda loop: (loop.step < length) & ~tf.reduce_all(loop.finished),
        body,
        (initial,),
        maximum_iterations=length,
    )
    return _ranked(final, batch, width, spec, knobs)


def _ranked(final: _Loop, batch: tf.Tensor, width: int, spec: SearchSpec, knobs: Knobs):
    """Hypotheses per input, best first: by length-normalized score for beam search, by
    log-probability otherwise."""
    log_probs = tf.reshape(final.log_probs, [batch, width])
    lengths = tf.reshape(final.lengths, [batch, width])
    if spec.strategy == "beam":
        scores = log_probs / gnmt_penalty(lengths + 1, knobs.length_penalty)
    else:
        scores = log_probs
    _, order = tf.math.top_k(scores, k=width)

    def arrange(value: tf.Tensor) -> tf.Tensor:
        shaped = tf.reshape(value, tf.concat([[batch, width], tf.shape(value)[1:]], 0))
        return tf.gather(shaped, order, axis=1, batch_dims=1)

    return Decoded(
        tokens=arrange(final.tokens),
        log_probs=tf.gather(log_probs, order, axis=1, batch_dims=1),
        scores=tf.gather(scores, order, axis=1, batch_dims=1),
        lengths=tf.gather(lengths, order, axis=1, batch_dims=1),
        attention=arrange(final.attention) if spec.return_attention else None,
    )


def phrase_ids(phrases: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Deduplicated, non-empty phrase id tuples, in a stable order (part of the compile key)."""
    return tuple(sorted({tuple(p) for p in phrases if p}))
