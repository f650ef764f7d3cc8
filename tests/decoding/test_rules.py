import numpy as np
import pytest
import tensorflow as tf

from chatbot.decoding.constraints import NEVER_GENERATED
from chatbot.decoding.generator import make_knobs
from chatbot.decoding.kernels import NEG_INF
from chatbot.decoding.rules import Rules, length_caps
from chatbot.decoding.search import SearchSpec
from chatbot.tokenizer import EOS_ID

VOCAB = 9


def knobs(**changes):
    values = dict(max_length=4, min_length=1, length_penalty=0.0, temperature=1.0, top_k=0)
    values.update(top_p=1.0, repetition_penalty=1.0, seed=[0, 0])
    return make_knobs(**{**values, **changes})


def allowed_ids(ruled) -> list[list[int]]:
    return [np.flatnonzero(row > NEG_INF / 2).tolist() for row in ruled.allowed.numpy()]


def test_length_caps_rows_ban_eos_early_everything_else_at_the_end_or_all():
    caps = length_caps(VOCAB)
    real = [i for i in range(VOCAB) if i not in NEVER_GENERATED and i != EOS_ID]
    assert np.flatnonzero(caps[0] == 0).tolist() == sorted([EOS_ID, *real])
    assert np.flatnonzero(caps[1] == 0).tolist() == real
    assert np.flatnonzero(caps[2] == 0).tolist() == [EOS_ID]
    assert not (caps[3] == 0).any()


def test_rules_apply_the_length_rules_by_step():
    rules = Rules(SearchSpec(), VOCAB, tf.constant([[5, EOS_ID]]))
    logits, tokens = tf.zeros([1, VOCAB]), tf.zeros([1, 5], tf.int32)
    assert EOS_ID not in allowed_ids(rules(logits, tokens, tf.constant(0), knobs()))[0]
    assert allowed_ids(rules(logits, tokens, tf.constant(4), knobs())) == [[EOS_ID]]


def test_log_probs_are_the_models_and_allowed_adds_the_bans():
    spec = SearchSpec(no_repeat_ngram=1, banned=((7,),))
    rules = Rules(spec, VOCAB, tf.constant([[5, EOS_ID]]))
    logits = tf.constant([np.arange(VOCAB, dtype=np.float32)])
    tokens = tf.constant([[6, 0, 0, 0, 0]])
    ruled = rules(logits, tokens, tf.constant(1), knobs())
    np.testing.assert_allclose(ruled.log_probs, tf.nn.log_softmax(logits), rtol=1e-6)
    assert allowed_ids(ruled) == [[EOS_ID, 5, 8]]  # 6 repeats, 7 is banned


def test_context_ngrams_are_blocked_but_special_ids_never_match():
    rules = Rules(SearchSpec(block_context_ngram=1), VOCAB, tf.constant([[5, EOS_ID]]))
    ruled = rules(tf.zeros([1, VOCAB]), tf.zeros([1, 5], tf.int32), tf.constant(1), knobs())
    assert allowed_ids(ruled) == [[EOS_ID, 6, 7, 8]]


def test_specificity_adds_its_weight_times_each_tokens_nidf_to_the_logits():
    nidf = np.linspace(0.0, 1.0, VOCAB, dtype=np.float32)
    rules = Rules(SearchSpec(weight_specificity=True), VOCAB, tf.constant([[5, EOS_ID]]), nidf=nidf)
    logits = np.random.default_rng(0).normal(size=(2, VOCAB)).astype(np.float32)
    ruled = rules(
        tf.constant(logits), tf.zeros([2, 5], tf.int32), tf.constant(1), knobs(specificity=2.5)
    )
    shifted = logits + 2.5 * nidf
    expected = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ruled.log_probs, expected, rtol=1e-5, atol=1e-6)


def test_specificity_without_the_nidf_vector_is_refused():
    with pytest.raises(ValueError, match="NIDF"):
        Rules(SearchSpec(weight_specificity=True), VOCAB, tf.constant([[5, EOS_ID]]))
