import numpy as np
import pytest

from chatbot.training.losses import masked_cross_entropy, mean_token_log_likelihood, ranking_loss


def _reference(logits, targets, weights, eps):
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    vocab = logits.shape[-1]
    one_hot = np.eye(vocab)[targets]
    smoothed = (1 - eps) * one_hot + eps / vocab
    loss = -(smoothed * log_probs).sum(-1)
    nll = -(one_hot * log_probs).sum(-1)
    return (loss * weights).sum(), (nll * weights).sum(), weights.sum()


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_matches_numpy_reference_and_ignores_padding(eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7)).astype("float32")
    targets = rng.integers(0, 7, size=(3, 5))
    weights = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], "float32")
    got = [float(v) for v in masked_cross_entropy(logits, targets, weights, eps)]
    np.testing.assert_allclose(got, _reference(logits, targets, weights, eps), rtol=1e-5)
    # whatever the padded positions hold, the result is the same
    logits[0, 3:] = 100.0
    again = [float(v) for v in masked_cross_entropy(logits, targets, weights, eps)]
    np.testing.assert_allclose(again, got, rtol=1e-6)


def _log_softmax(x, axis=-1):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def test_mean_token_log_likelihood_averages_each_rows_weighted_positions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 6)).astype("float32")
    targets = rng.integers(0, 6, size=(3, 4))
    weights = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], "float32")
    got = np.asarray(mean_token_log_likelihood(logits, targets, weights))
    true = np.take_along_axis(_log_softmax(logits), targets[..., None], -1)[..., 0]
    expected = [true[0, :2].mean(), true[1].mean(), 0.0]  # an empty row scores 0, not NaN
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_ranking_loss_is_info_nce_over_the_valid_columns():
    scores = np.array([[-1.0, -2.0, -0.5], [-1.0, -3.0, -1.0], [-2.0, -1.0, -1.0]], "float32")
    valid = np.array([[True, True, True], [True, False, True], [True, False, False]])
    expected = np.mean(
        [
            -_log_softmax(scores[0])[0],
            -_log_softmax(scores[1, [0, 2]])[0],
            0.0,  # no valid negative: nothing to rank against
        ]
    )
    np.testing.assert_allclose(float(ranking_loss(scores, valid)), expected, rtol=1e-6)


def test_ranking_loss_falls_as_the_true_reply_pulls_ahead():
    valid = np.ones((1, 3), bool)
    losses = [
        float(ranking_loss(np.array([[margin, 0.0, 0.0]], "float32"), valid))
        for margin in (-1.0, 0.0, 1.0, 3.0)
    ]
    assert losses == sorted(losses, reverse=True)
    assert losses[1] == pytest.approx(np.log(3.0))
