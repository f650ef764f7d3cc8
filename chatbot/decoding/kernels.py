"""Small ops of the decoding loop written the way TensorFlow Lite and XLA run them fast.

Each helper computes what its name says with the op choice the runtimes favour; the reason is
one line beside it, and the bench script that measures it is named there. Masks are float32
tensors, positive where a token is banned, rather than bools: Lite runs float element-wise ops
many times faster than boolean ones and selects over whole vocabulary rows
(`bench/lite_ops.py`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NEG_INF = -1e9  # the log-probability of a banned token: finite, so float masks can carry it
# A hypothesis whose log-probability is at or below this was ruled out by the rules (it holds
# a NEG_INF token), not merely unlikely: callers drop it from the candidates.
IMPOSSIBLE = -1e8


def is_possible(log_probs: tf.Tensor | np.ndarray) -> tf.Tensor | np.ndarray:
    """Whether each hypothesis' log-probability is that of a reply the rules allowed."""
    return log_probs > IMPOSSIBLE


def apply_bans(log_probs: tf.Tensor, bans: list[tf.Tensor]) -> tf.Tensor:
    """`log_probs` capped at NEG_INF where any ban mask is positive, and at -0 (no cap)
    elsewhere: a sum and a minimum instead of a boolean or and a select (`bench/lite_ops.py`)."""
    if not bans:
        return log_probs
    return tf.minimum(log_probs, NEG_INF * tf.minimum(tf.add_n(bans), 1.0))


def below_cutoff_to_neg_inf(logits: tf.Tensor, cutoff: tf.Tensor) -> tf.Tensor:
    """`logits` with those below `cutoff` [R, 1] set to NEG_INF. Where logits < cutoff,
    ceil(clip(cutoff - logits, 0, 1)) is 1, else 0: float ops in place of a comparison and a
    select of whole rows (`bench/lite_ops.py`). Scaled log-probabilities are at most 0, so the
    minimum keeps them otherwise."""
    below = tf.math.ceil(tf.clip_by_value(cutoff - logits, 0.0, 1.0))
    return tf.minimum(logits, NEG_INF * below)


def row_best(values: tf.Tensor) -> tf.Tensor:
    """[R, 1]: the best of each row of candidate values, by a reduction: a slice of `top_k`'s
    output turns XLA's top-k into a sort of whole rows (`bench/decoding_speed.py`, beam)."""
    return tf.reduce_max(values, axis=1, keepdims=True)


def only(token: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The `count` best (log-probability, id) pairs of a row where only `token` is allowed,
    log-probability 0, in the order `tf.math.top_k` gives them: the banned ids follow at
    NEG_INF, lowest id first. Finished and stuck rows are settled on these few candidates
    rather than on whole vocabulary rows, which Lite selects slowly (`bench/lite_ops.py`)."""
    ids = np.array([token, *[i for i in range(count) if i != token][: count - 1]], np.int32)
    return np.where(ids == token, 0.0, NEG_INF).astype(np.float32), ids
