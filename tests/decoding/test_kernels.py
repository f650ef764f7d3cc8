import numpy as np
import tensorflow as tf

from chatbot.decoding.kernels import (
    NEG_INF,
    apply_bans,
    below_cutoff_to_neg_inf,
    is_possible,
    only,
    row_best,
)


def test_bans_cap_banned_tokens_at_neg_inf_and_leave_the_rest():
    log_probs = tf.constant([[-1.0, -2.0, -3.0]])
    bans = [tf.constant([[0.0, 1.0, 0.0]]), tf.constant([[0.0, 2.0, 1.0]])]
    np.testing.assert_array_equal(apply_bans(log_probs, bans), [[-1.0, NEG_INF, NEG_INF]])
    assert apply_bans(log_probs, []) is log_probs


def test_logits_below_the_cutoff_become_neg_inf():
    logits = tf.constant([[-0.5, -1.0, -2.5], [-0.25, -0.5, -0.75]])
    cut = below_cutoff_to_neg_inf(logits, tf.constant([[-1.0], [-0.75]])).numpy()
    np.testing.assert_array_equal(cut, [[-0.5, -1.0, NEG_INF], [-0.25, -0.5, -0.75]])


def test_row_best_is_each_rows_maximum():
    np.testing.assert_array_equal(
        row_best(tf.constant([[1.0, 3.0], [-2.0, -5.0]])), [[3.0], [-2.0]]
    )


def test_only_lists_the_allowed_token_first_then_banned_ids_in_top_k_order():
    values, ids = only(3, 4)
    assert ids.tolist() == [3, 0, 1, 2]
    assert values.tolist() == [0.0, NEG_INF, NEG_INF, NEG_INF]
    values, ids = only(0, 1)
    assert (ids.tolist(), values.tolist()) == ([0], [0.0])


def test_a_hypothesis_holding_a_banned_token_is_not_possible():
    assert is_possible(np.array([-50.0, NEG_INF, NEG_INF / 5])).tolist() == [True, False, False]
