"""Per-token log-probabilities and OpenAI's presence and frequency penalties, inside the loop."""

import numpy as np
import pytest
import tensorflow as tf

from chatbot.decoding.generator import make_knobs
from chatbot.decoding.rules import Rules
from chatbot.decoding.search import SearchSpec
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID

from .test_search import SOURCE, knobs, tiny_generator

VOCAB = 9


def teacher_forced_steps(generator, sources, targets):
    """float [R, L]: each target token's log-probability under teacher forcing (0 at PAD)."""
    decoder_input = np.concatenate([np.full_like(targets[:, :1], BOS_ID), targets[:, :-1]], axis=1)
    logits = generator.model({"source_ids": sources, "decoder_input_ids": decoder_input})
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    picked = np.take_along_axis(log_probs, targets[..., None], axis=2)[..., 0]
    return np.where(targets != PAD_ID, picked, 0.0), log_probs


@pytest.mark.parametrize(
    "spec",
    [SearchSpec("greedy", logprobs=3), SearchSpec("beam", 4, logprobs=2)],
    ids=["greedy", "beam"],
)
def test_token_log_probs_are_the_teacher_forced_ones_and_sum_to_the_reply(spec):
    generator = tiny_generator(1, attention="bahdanau")
    decoded = generator.generate(SOURCE, spec, knobs(max_length=6))
    flat = decoded.tokens.reshape(-1, decoded.tokens.shape[-1])
    sources = np.repeat(SOURCE, spec.width, axis=0)
    steps, distribution = teacher_forced_steps(generator, sources, flat)
    recorded = decoded.token_log_probs.reshape(steps.shape)
    np.testing.assert_allclose(recorded, steps, atol=1e-4)
    np.testing.assert_allclose(recorded.sum(axis=1), decoded.log_probs.reshape(-1), atol=1e-4)
    top = decoded.top_log_probs.reshape(*steps.shape, spec.logprobs)
    ids = decoded.top_ids.reshape(top.shape)
    live = flat != PAD_ID
    expected = -np.sort(-distribution, axis=-1)[..., : spec.logprobs]
    np.testing.assert_allclose(top[live], expected[live], atol=1e-4)
    at_ids = np.take_along_axis(distribution, ids, axis=2)
    np.testing.assert_allclose(at_ids[live], top[live], atol=1e-4)


def test_collecting_log_probs_leaves_the_replies_as_they_were():
    generator = tiny_generator(4)
    for strategy, width in (("greedy", 1), ("beam", 3), ("sample", 2)):
        plain = generator.generate(SOURCE, SearchSpec(strategy, width), knobs(max_length=5))
        spec = SearchSpec(strategy, width, logprobs=0)
        collected = generator.generate(SOURCE, spec, knobs(max_length=5))
        np.testing.assert_array_equal(plain.tokens, collected.tokens)
        np.testing.assert_array_equal(plain.log_probs, collected.log_probs)
        assert collected.top_ids.shape[-1] == 0


def numpy_penalties(logits, history, presence, frequency):
    """OpenAI's definition: logit - presence * [count > 0] - frequency * count."""
    counts = np.zeros_like(logits)
    for row, ids in enumerate(history):
        for token in ids:
            counts[row, token] += 1
    return logits - presence * (counts > 0) - frequency * counts


@pytest.mark.parametrize(("presence", "frequency"), [(0.7, 0.0), (0.0, 1.3), (-0.5, 2.0)])
def test_penalties_match_openais_definition(presence, frequency):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, VOCAB)).astype(np.float32)
    tokens = np.array([[5, 5, 6, 7, 0], [8, 8, 8, 0, 0], [6, 7, 5, 6, 0]], np.int32)
    step = 3  # the history is the first three tokens of each row
    spec = SearchSpec(penalize_counts=True)
    rules = Rules(spec, VOCAB, tf.constant([[5, EOS_ID]] * 3))
    values = dict(max_length=4, min_length=0, length_penalty=0.0, temperature=1.0, top_k=0)
    values.update(top_p=1.0, repetition_penalty=1.0, seed=[0, 0])
    ruled = rules(
        tf.constant(logits),
        tf.constant(tokens),
        tf.constant(step),
        make_knobs(**values, presence_penalty=presence, frequency_penalty=frequency),
    )
    expected = numpy_penalties(logits, tokens[:, :step], presence, frequency)
    expected = expected - np.log(np.exp(expected).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(ruled.log_probs.numpy(), expected, atol=1e-5)


def test_a_frequency_penalty_makes_a_greedy_reply_repeat_less():
    generator = tiny_generator(5)
    plain = generator.generate(SOURCE, SearchSpec("greedy"), knobs(max_length=12, min_length=12))
    spec = SearchSpec("greedy", penalize_counts=True)
    penalized = generator.generate(
        SOURCE, spec, knobs(max_length=12, min_length=12, frequency_penalty=2.0)
    )

    def most_repeated(tokens):
        return max(np.bincount(row[row > EOS_ID]).max() for row in tokens.reshape(-1, 13))

    assert most_repeated(penalized.tokens) < most_repeated(plain.tokens)
