import numpy as np
import pytest

from chatbot.training.losses import masked_cross_entropy


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
