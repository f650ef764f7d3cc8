"""The sampling filter: temperature, top-k and top-p (nucleus sampling, Holtzman et al. 2020).

Sorting the whole vocabulary every step costs more than the rest of a sampled step in
TensorFlow Lite, so only the `head` likeliest tokens are sorted; a row whose top-k or nucleus
reaches beyond them (a flat distribution, a large top-k) is then sorted to `wide` tokens, and
whole if that is not enough either, one row at a time, since few rows need it. The sizes come
from the nuclei the default model's sampled replies hold (`bench/nucleus_sizes.py`) and what
Lite's top-k costs at each size (`bench/lite_ops.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from chatbot.decoding.kernels import below_cutoff_to_neg_inf

if TYPE_CHECKING:
    from chatbot.decoding.search import Knobs

NUCLEUS_HEAD = 64  # tokens sorted for every row
NUCLEUS_WIDE = 1024  # tokens sorted for a row whose nucleus reaches beyond the head


def filter_for_sampling(
    log_probs: tf.Tensor, knobs: Knobs, head: int = NUCLEUS_HEAD, wide: int = NUCLEUS_WIDE
) -> tf.Tensor:
    """Temperature, then keep the top-k tokens (k = 0: all) and the smallest set whose
    probability reaches top_p; the others get NEG_INF. Without top-k and top-p nothing is
    sorted."""
    logits = log_probs / knobs.temperature
    vocab_size = tf.shape(logits)[-1]
    k = tf.where(knobs.top_k > 0, tf.minimum(knobs.top_k, vocab_size), vocab_size)
    log_total = tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    return tf.cond(
        (knobs.top_k <= 0) & (knobs.top_p >= 1.0),
        lambda: logits,
        lambda: _filtered(logits, log_total, k, knobs.top_p, head, wide),
    )


def _filtered(
    logits: tf.Tensor, log_total: tf.Tensor, k: tf.Tensor, top_p: tf.Tensor, head: int, wide: int
) -> tf.Tensor:
    """`logits` with NEG_INF outside the top-k and the nucleus."""
    width = logits.shape[-1]
    ordered = tf.math.top_k(logits, min(head, width)).values
    cutoff, settled = _floor(ordered, log_total, k, top_p)
    settled = tf.cast(settled, tf.int32)
    # Two loops one after the other rather than a cond inside one: TensorFlow Lite's converter
    # fails on a second program in the same process otherwise (a function name clash), and a
    # server that samples with two settings converts two programs.
    for size in sorted({min(wide, width), width}):
        cutoff, settled = _deepen(logits, log_total, k, top_p, cutoff, settled, size)
    return below_cutoff_to_neg_inf(logits, cutoff)


def _floor(
    ordered: tf.Tensor, log_total: tf.Tensor, k: tf.Tensor, top_p: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor]:
    """The lowest kept logit per row given its likeliest logits in descending order, and
    whether they were enough to settle it."""
    width = ordered.shape[-1]
    kth = tf.gather(ordered, tf.minimum(k, width) - 1, axis=-1)[:, None]
    probs = tf.exp(ordered - log_total)
    before = tf.cumsum(probs, axis=-1, exclusive=True)  # the mass of likelier tokens
    # top_p = 1 keeps every token: summed in float32, the mass can reach 1 before the tail
    inside = (before < top_p) | (top_p >= 1.0)
    kept = tf.reduce_sum(tf.cast(inside, tf.int32), axis=-1)
    kept = tf.maximum(kept, 1)  # the likeliest token always stays, however small top_p is
    nucleus = tf.gather(ordered, kept[:, None] - 1, axis=-1, batch_dims=1)
    reached = (top_p < 1.0) & (before[:, -1] + probs[:, -1] >= top_p)
    return tf.maximum(kth, nucleus), (k <= width) | reached


def _deepen(
    logits: tf.Tensor,
    log_total: tf.Tensor,
    k: tf.Tensor,
    top_p: tf.Tensor,
    cutoff: tf.Tensor,
    settled: tf.Tensor,
    size: int,
) -> tuple[tf.Tensor, tf.Tensor]:
    """`_floor` again from the `size` likeliest logits of each row not yet settled (int32
    flags), one row at a time, since few rows need it."""
    order = tf.argsort(settled, stable=True)  # the unsettled rows first

    def row_floor(i: tf.Tensor, cutoff: tf.Tensor, settled: tf.Tensor):
        row = tf.reshape(tf.gather(order, i), [1])  # a slice would be dynamic to XLA
        ordered = tf.math.top_k(tf.gather(logits, row), size).values
        row_cutoff, row_settled = _floor(ordered, tf.gather(log_total, row), k, top_p)
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
