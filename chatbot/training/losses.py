"""Training losses: token-level cross-entropy over padded batches (optionally label-smoothed)
and a sequence-level ranking loss that asks the reply to fit its own context.

Cross-entropy is returned as sums with the token count, not means, so that batches of different
lengths (and replicas under tf.distribute) combine into an exact per-token average.
"""

from __future__ import annotations

from typing import Any

from keras import ops


def _log_probs(logits: Any, targets: Any) -> tuple[Any, Any]:
    """(log-softmax over the vocabulary [B, T, V], log p(target) [B, T]) in float32."""
    log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
    true_log_prob = ops.take_along_axis(
        log_probs, ops.expand_dims(ops.cast(targets, "int32"), -1), axis=-1
    )[..., 0]
    return log_probs, true_log_prob


def masked_cross_entropy(
    logits: Any, targets: Any, weights: Any, label_smoothing: float = 0.0
) -> tuple[Any, Any, Any]:
    """(smoothed loss sum, negative log-likelihood sum, token count) over weighted positions.

    With smoothing eps over V classes the target distribution is (1 - eps) on the true token
    plus eps / V everywhere, so loss = (1 - eps) * nll + eps * mean_v(-log p_v). The plain NLL
    is returned too: perplexity must not depend on the smoothing.
    """
    weights = ops.cast(weights, "float32")
    log_probs, true_log_prob = _log_probs(logits, targets)
    nll = -true_log_prob
    if label_smoothing:
        loss = (1.0 - label_smoothing) * nll - label_smoothing * ops.mean(log_probs, axis=-1)
    else:
        loss = nll
    return ops.sum(loss * weights), ops.sum(nll * weights), ops.sum(weights)


def mean_token_log_likelihood(logits: Any, targets: Any, weights: Any) -> Any:
    """Each row's mean log p(target token) over its weighted positions [B]: the per-token score
    that `chatbot evaluate` ranks replies by for hits@1/K."""
    weights = ops.cast(weights, "float32")
    _, true_log_prob = _log_probs(logits, targets)
    return ops.sum(true_log_prob * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)


def ranking_loss(scores: Any, valid: Any) -> Any:
    """Mean over rows of -log softmax(scores)[:, 0] among the row's valid columns.

    Column 0 scores each example's own reply, the others replies to other contexts; `valid`
    [B, 1 + K] masks out columns that must not count as negatives (a reply identical to the
    row's own). A row with no valid negative adds zero. This is InfoNCE (van den Oord et al.
    2018) over sequence scores: it raises the true reply's likelihood relative to replies that
    fit other contexts, which likelihood training alone does not ask for.
    """
    scores = ops.cast(scores, "float32")
    masked = ops.where(valid, scores, ops.full_like(scores, -1e9))
    return -ops.mean(ops.log_softmax(masked, axis=1)[:, 0])
