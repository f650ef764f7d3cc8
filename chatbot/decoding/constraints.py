"""Rules on what the next token may be, applied to a step's log-probabilities as masks.

Each rule returns a float32 [rows, vocab] tensor, positive where a token is banned and 0
elsewhere; the loop sets those log-probabilities to -inf. They run inside the compiled loop,
vectorized over rows. Masks are floats, not bools, because TensorFlow Lite runs float
element-wise ops many times faster than boolean ones and selects over whole vocabulary rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from chatbot.tokenizer import BOS_ID, PAD_ID, SEP_ID, UNK_ID

NEVER_GENERATED = (PAD_ID, UNK_ID, BOS_ID, SEP_ID)


def token_counts(rows: tf.Tensor, ids: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """float32 [R, V]: at (r, v), how often id v appears in row r of `ids` [R, W] (ids < 0 are
    not counted)."""
    count = tf.shape(ids)[1]
    row_index = tf.repeat(tf.range(rows), count)
    flat = tf.reshape(ids, [-1])
    valid = flat >= 0
    indices = tf.stack([row_index, tf.maximum(flat, 0)], axis=1)
    return tf.scatter_nd(indices, tf.cast(valid, tf.float32), [rows, vocab_size])  # sums repeats


def suffix(tokens: tf.Tensor, length: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The last `size` tokens of each row's history `tokens` [R, L] before position `length`,
    and whether the history is that long yet."""
    positions = length - size + tf.range(size)
    return tf.gather(tokens, tf.maximum(positions, 0), axis=1), tf.fill(
        [tf.shape(tokens)[0]], length >= size
    )


def ngram_bans(
    memory: tf.Tensor,
    tail: tf.Tensor,
    ready: tf.Tensor,
    n: int,
    vocab_size: int,
    canonical: np.ndarray | None = None,
) -> tf.Tensor:
    """Ban every token that would complete an n-gram already present in `memory` [R, M]
    (ids, -1 for positions that must not match) after the row's last n-1 tokens `tail`.
    With `canonical` [V], ids that map to the same canonical id count as one token."""
    rows = tf.shape(memory)[0]
    if canonical is None:
        return token_counts(rows, _completions(memory, tail, ready, n), vocab_size)
    to_canonical = tf.constant(canonical, tf.int32)
    memory = tf.where(memory >= 0, tf.gather(to_canonical, tf.maximum(memory, 0)), -1)
    tail = tf.gather(to_canonical, tf.maximum(tail, 0))
    banned = _completions(memory, tail, ready, n)  # canonical ids [R, M], -1 for none
    # every id whose canonical id is banned, from a short list per canonical id: gathering the
    # columns of whole vocabulary rows by `canonical` is slow in Lite (`bench/lite_ops.py`)
    ids = tf.gather(tf.constant(_same_reading(canonical)), tf.maximum(banned, 0))  # [R, M, G]
    ids = tf.where(banned[:, :, None] >= 0, ids, -1)
    return token_counts(rows, tf.reshape(ids, [rows, -1]), vocab_size)


def _same_reading(canonical: np.ndarray) -> np.ndarray:
    """int32 [V, G]: row c lists the ids whose canonical id is c, padded with -1."""
    members: list[list[int]] = [[] for _ in canonical]
    for token_id, canonical_id in enumerate(canonical.tolist()):
        members[canonical_id].append(token_id)
    table = np.full((len(canonical), max(map(len, members))), -1, np.int32)
    for canonical_id, ids in enumerate(members):
        table[canonical_id, : len(ids)] = ids
    return table


def _completions(memory: tf.Tensor, tail: tf.Tensor, ready: tf.Tensor, n: int) -> tf.Tensor:
    """int32 [R, M]: for each n-gram of `memory` that starts with `tail`, its last id; else -1."""
    if n == 1:
        return memory
    # The n-gram starting at position j is padded[:, j : j + n], and its i-th token for every j
    # is the slice shifted[i]. Padding with n - 1 unmatchable positions keeps the slices as long
    # as the memory, and an n-gram ending in padding is dropped below. (Slices, not
    # tf.signal.frame, whose dynamic shape arithmetic cost TensorFlow Lite dozens of ops a step.)
    size = tf.shape(memory)[1]
    padded = tf.pad(memory, [[0, 0], [0, n - 1]], constant_values=-1)
    shifted = [padded[:, i : i + size] for i in range(n)]
    matches = (shifted[-1] >= 0) & ready[:, None]
    for i in range(n - 1):
        matches &= tf.equal(shifted[i], tail[:, i : i + 1])
    return tf.where(matches, shifted[-1], -1)


def phrase_bans(
    tokens: tf.Tensor, length: tf.Tensor, phrases: Sequence[Sequence[int]], vocab_size: int
) -> tf.Tensor:
    """Ban the last token of a phrase when the history ends with the rest of it."""
    rows = tf.shape(tokens)[0]
    last = []  # per phrase, its last id in the rows that end with the rest of it, else -1
    for phrase in phrases:
        if len(phrase) == 1:
            hit = tf.ones([rows], tf.bool)
        else:
            tail, ready = suffix(tokens, length, len(phrase) - 1)
            hit = tf.reduce_all(tail == tf.constant(phrase[:-1], tokens.dtype), axis=1) & ready
        last.append(tf.where(hit, phrase[-1], -1))
    return token_counts(rows, tf.stack(last, axis=1), vocab_size)


def _reply_counts(logits: tf.Tensor, tokens: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """float32 [R, V]: how often each id occurs in each row's history before `length`."""
    history = tf.where(tf.range(tf.shape(tokens)[1])[None, :] < length, tokens, -1)
    return token_counts(tf.shape(logits)[0], history, tf.shape(logits)[1])


def count_penalties(
    logits: tf.Tensor,
    tokens: tf.Tensor,
    length: tf.Tensor,
    presence: tf.Tensor,
    frequency: tf.Tensor,
) -> tf.Tensor:
    """OpenAI's presence and frequency penalties: each logit minus `presence` if its token is
    already in the reply (`tokens` before `length`) and minus `frequency` times how often."""
    counts = _reply_counts(logits, tokens, length)
    return logits - frequency * counts - presence * tf.minimum(counts, 1.0)


def repetition_penalty(
    logits: tf.Tensor, tokens: tf.Tensor, length: tf.Tensor, penalty: tf.Tensor
) -> tf.Tensor:
    """Keskar et al. (2019): divide positive logits (multiply negative ones) of tokens already
    in the reply by `penalty` (at least 1), making a repeat less likely whatever the logit's
    sign. Computed as the smaller of logit / penalty and logit * penalty, which is the one
    that lowers the logit."""
    unseen = 1.0 - tf.minimum(_reply_counts(logits, tokens, length), 1.0)
    penalized = tf.minimum(logits / penalty, logits * penalty)
    # the penalized logit where seen, and the logit itself under a cap too large to bind
    return tf.minimum(logits, penalized + unseen * np.finfo(np.float32).max)
