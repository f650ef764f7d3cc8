import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.decoding.kernels import NEG_INF
from chatbot.decoding.sampling import filter_for_sampling
from tests.decoding.test_search import knobs


@pytest.mark.parametrize(
    ("top_k", "top_p", "kept"), [(0, 1.0, 4), (2, 1.0, 2), (0, 0.6, 2), (0, 5e-324, 1)]
)
def test_sampling_filter_keeps_top_k_and_the_nucleus_and_never_nothing(top_k, top_p, kept):
    probs = np.array([[0.1, 0.5, 0.15, 0.25]], np.float32)
    filtered = filter_for_sampling(tf.math.log(probs), knobs(top_k=top_k, top_p=top_p)).numpy()
    expected = np.argsort(-probs[0])[:kept]
    assert sorted(np.flatnonzero(filtered[0] > NEG_INF / 2)) == sorted(expected)


FILTERS = {}


def nucleus_reference(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """Which tokens top-k and top-p keep, by the definition: sort the whole vocabulary."""
    ordered = -np.sort(-logits, axis=-1)
    probs = np.exp(ordered - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    before = np.cumsum(probs, axis=-1) - probs
    kept = np.maximum((before < top_p).sum(-1), 1) if top_p < 1 else logits.shape[-1]
    k = min(top_k, logits.shape[-1]) if top_k > 0 else logits.shape[-1]
    floor = np.maximum(ordered[:, k - 1], ordered[np.arange(len(logits)), kept - 1])
    return logits >= floor[:, None]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    sharpness=st.sampled_from([0.1, 1.0, 4.0, 12.0]),
    top_k=st.sampled_from([0, 1, 3, 8, 40]),
    top_p=st.sampled_from([0.05, 0.5, 0.9, 1.0]),
    head=st.sampled_from([1, 4, 16]),
    wide=st.sampled_from([8, 24, 64]),
    xla=st.booleans(),
)
def test_sampling_filter_sorting_a_head_keeps_what_a_full_sort_keeps(
    seed, sharpness, top_k, top_p, head, wide, xla
):
    """Flat rows and large top-k need the wide head or the full sort, peaked ones settle
    within the head; a batch mixes them, and either way (in graph mode and under XLA) the kept
    tokens are the definition's."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(3, 40)) * np.array([[sharpness], [0.1], [12.0]])
    log_probs = tf.nn.log_softmax(tf.constant(logits, tf.float32))
    if (head, wide, xla) not in FILTERS:
        FILTERS[head, wide, xla] = tf.function(
            lambda x, knobs: filter_for_sampling(x, knobs, head=head, wide=wide), jit_compile=xla
        )
    filtered = FILTERS[head, wide, xla](log_probs, knobs(top_k=top_k, top_p=top_p))
    expected = nucleus_reference(log_probs.numpy(), top_k, top_p)
    np.testing.assert_array_equal(filtered.numpy() > NEG_INF / 2, expected)
