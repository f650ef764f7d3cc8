import numpy as np
import pytest
import tensorflow as tf

from chatbot.decoding.generator import make_knobs
from chatbot.decoding.kernels import NEG_INF
from chatbot.decoding.search import SearchSpec
from chatbot.decoding.strategies import Beam, Greedy, Sample, gnmt_penalty, strategy_for

KNOBS = make_knobs(
    max_length=4, min_length=0, length_penalty=0.0, temperature=1.0, top_k=1, top_p=1.0,
    repetition_penalty=1.0, seed=[1, 2],
)  # fmt: skip
ALLOWED = tf.math.log(tf.constant([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (SearchSpec("greedy"), Greedy),
        (SearchSpec("sample", 2), Sample),
        (SearchSpec("beam", 3), Beam),
    ],
)
def test_the_spec_names_the_strategy(spec, kind):
    strategy = strategy_for(spec, 100)
    assert type(strategy) is kind and strategy.width == spec.width


def test_greedy_and_top_k_one_sampling_propose_the_likeliest_token():
    for strategy in (Greedy(1), Sample(1)):
        values, ids = strategy.propose(ALLOWED, KNOBS, tf.constant(0))
        assert ids.numpy().tolist() == [[1], [0]]
        np.testing.assert_allclose(values, [[np.log(0.6)], [np.log(0.5)]], rtol=1e-6)


def test_independent_rows_continue_themselves():
    chosen = Greedy(1).select(
        tf.constant([-1.0, -2.0]),
        tf.constant([[-0.5], [-0.25]]),
        tf.constant([[4], [5]]),
        finished=tf.constant([False, False]),
        lengths=tf.constant([1, 1]),
        knobs=KNOBS,
        batch=2,
    )
    assert chosen.parent is None and chosen.token.numpy().tolist() == [4, 5]
    np.testing.assert_allclose(chosen.log_probs, [-1.5, -2.25])


def test_beam_starts_from_one_hypothesis_and_keeps_the_best_continuations():
    beam = Beam(2, vocab_size=3)
    assert beam.initial_scores(1).numpy().tolist() == [0.0, NEG_INF]
    values, ids = beam.propose(ALLOWED, KNOBS, tf.constant(0))
    assert ids.numpy().tolist() == [[1, 2], [0, 2]]
    chosen = beam.select(
        tf.constant([0.0, -0.1]),
        values,
        ids,
        finished=tf.constant([False, False]),
        lengths=tf.constant([0, 0]),
        knobs=KNOBS,
        batch=1,
    )
    # row 0 + token 1 (log 0.6), then row 1 + token 0 (-0.1 + log 0.5)
    assert chosen.token.numpy().tolist() == [1, 0]
    assert chosen.parent.numpy().tolist() == [0, 1]


def test_beam_scores_divide_by_the_gnmt_length_penalty():
    alpha = tf.constant(1.0)
    scores = Beam(1, 3).scores(
        tf.constant([[-6.0]]), tf.constant([[0]]), KNOBS._replace(length_penalty=alpha)
    )
    np.testing.assert_allclose(scores, [[-6.0]])
    np.testing.assert_allclose(gnmt_penalty(tf.constant(7), alpha), 2.0)
