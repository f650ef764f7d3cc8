import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.decoding.constraints import ngram_bans, phrase_bans, token_counts

VOCAB = 7
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def id_rows(rows: int, width: int, low: int = -1):
    """Rows of token ids, -1 where a position must not count."""
    return st.lists(
        st.lists(st.integers(low, VOCAB - 1), min_size=width, max_size=width),
        min_size=rows,
        max_size=rows,
    ).map(lambda values: np.array(values, np.int32))


@SETTINGS
@given(ids=id_rows(3, 5))
def test_token_counts_count_each_valid_id_per_row(ids):
    counts = token_counts(3, tf.constant(ids), VOCAB).numpy()
    expected = np.stack([np.bincount(row[row >= 0], minlength=VOCAB) for row in ids])
    np.testing.assert_array_equal(counts, expected)


def ngram_reference(memory, tail, ready, n, canonical):
    """The ids that would complete an n-gram of `memory` after `tail`, by definition."""
    read = canonical if canonical is not None else np.arange(VOCAB)
    banned = np.zeros((len(memory), VOCAB), bool)
    for r, row in enumerate(memory):
        if not ready[r]:
            continue
        for j in range(len(row) - n + 1):
            gram = row[j : j + n]
            if (gram < 0).any():
                continue
            if [read[t] for t in gram[:-1]] == [read[t] for t in tail[r]]:
                banned[r] |= read == read[gram[-1]]  # every id that reads the same
    return banned


@SETTINGS
@given(
    n=st.integers(1, 3),
    memory=id_rows(3, 6),
    tails=id_rows(3, 2, low=0),
    ready=st.lists(st.booleans(), min_size=3, max_size=3),
    canonical=st.none() | st.lists(st.integers(0, VOCAB - 1), min_size=VOCAB, max_size=VOCAB),
)
def test_ngram_bans_are_the_completions_of_the_tail(n, memory, tails, ready, canonical):
    """With `canonical`, ids that map to one canonical id are one token, both when matching
    the tail and when banning."""
    if canonical is not None:
        canonical = np.array(canonical, np.int32)
    tail = tails[:, : n - 1]
    got = ngram_bans(
        tf.constant(memory), tf.constant(tail), tf.constant(ready), n, VOCAB, canonical
    ).numpy()
    expected = ngram_reference(memory, tail, ready if n > 1 else [True] * 3, n, canonical)
    np.testing.assert_array_equal(got > 0, expected)


def test_phrase_bans_ban_a_phrase_s_last_token_after_the_rest_of_it():
    tokens = tf.constant([[5, 6, 0, 0], [6, 5, 0, 0], [5, 0, 0, 0]], tf.int32)
    phrases = ((5, 6, 4), (2,), (6, 5))
    got = phrase_bans(tokens, tf.constant(2), phrases, VOCAB).numpy() > 0
    expected = np.zeros((3, VOCAB), bool)
    expected[:, 2] = True  # a one-token phrase is always banned
    expected[0, 4] = True  # row 0 ends with 5 6, the rest of (5, 6, 4)
    expected[0, 5] = True  # and with 6, the rest of (6, 5); row 1 ends with 5 6 reversed
    np.testing.assert_array_equal(got, expected)
