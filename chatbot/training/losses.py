"""Token-level cross-entropy over padded batches, with optional label smoothing.

Losses are returned as sums with the token count, not means, so that batches of different
lengths (and replicas under tf.distribute) combine into an exact per-token average.
"""

from __future__ import annotations

from typing import Any

from keras import ops


def masked_cross_entropy(
    logits: Any, targets: Any, weights: Any, label_smoothing: float = 0.0
) -> tuple[Any, Any, Any]:
    """(smoothed loss sum, negative log-likelihood sum, token count) over weighted positions.

    With smoothing eps over V classes the target distribution is (1 - eps) on the true token
    plus eps / V everywhere, so loss = (1 - eps) * nll + eps * mean_v(-log p_v). The plain NLL
    is returned too: perplexity must not depend on the smoothing.
    """
    logits = ops.cast(logits, "float32")
    weights = ops.cast(weights, "float32")
    log_probs = ops.log_softmax(logits, axis=-1)
    true_log_prob = ops.take_along_axis(
        log_probs, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1
    )[..., 0]
    nll = -true_log_prob
    if label_smoothing:
        loss = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
    else:
        loss = nll
    return ops.sum(loss * weights), ops.sum(nll * weights), ops.sum(weights)
