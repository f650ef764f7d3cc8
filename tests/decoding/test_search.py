import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatbot.config import ModelConfig
from chatbot.decoding.constraints import repetition_penalty
from chatbot.decoding.generator import Generator, make_knobs
from chatbot.decoding.search import FinishReason, SearchSpec
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import EOS_ID, PAD_ID

REAL = [5, 6, 7, 8]  # four real tokens: with EOS, a vocabulary of five to generate from
VOCAB = 9
SOURCE = np.array([[5, 6, 7, EOS_ID], [8, 6, EOS_ID, PAD_ID]], np.int32)
MODELS = {}


def tiny_generator(seed: int, **changes) -> Generator:
    key = (seed, tuple(sorted(changes.items())))
    if key not in MODELS:
        keras.utils.set_random_seed(seed)
        config = ModelConfig(embedding_dim=6, hidden_size=8, attention_units=4, **changes)
        model = Seq2Seq(config, VOCAB)
        model.build()
        for weight in model.trainable_weights:  # sharper distributions than the initializers'
            weight.assign(weight.numpy() * 3)
        MODELS[key] = Generator(model)
    return MODELS[key]


def knobs(**changes):
    values = dict(
        max_length=3,
        min_length=1,
        length_penalty=0.0,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        seed=[1, 2],
    )
    return make_knobs(**{**values, **changes})


def replies(decoded, row, k=None):
    out = []
    for tokens in decoded.tokens[row][:k]:
        ids = tokens.tolist()
        out.append(tuple(ids[: ids.index(EOS_ID)]))
    return out


def brute_force(generator, source_row, max_length, min_length):
    """Every reply of min..max tokens from REAL, with its teacher-forced log-probability."""
    candidates = [
        seq for n in range(min_length, max_length + 1) for seq in itertools.product(REAL, repeat=n)
    ]
    targets = np.zeros((len(candidates), max_length + 1), np.int32)
    for i, seq in enumerate(candidates):
        targets[i, : len(seq) + 1] = [*seq, EOS_ID]
    sources = np.repeat(source_row[None], len(candidates), axis=0)
    return dict(zip(candidates, generator.score(sources, targets), strict=True))


def test_beam_width_one_is_greedy_token_for_token():
    generator = tiny_generator(0)
    greedy = generator.generate(SOURCE, SearchSpec("greedy"), knobs(max_length=8))
    beam = generator.generate(SOURCE, SearchSpec("beam", 1), knobs(max_length=8))
    np.testing.assert_array_equal(greedy.tokens, beam.tokens)


@pytest.mark.parametrize(
    "spec", [SearchSpec("greedy"), SearchSpec("beam", 4), SearchSpec("sample", 3)], ids=str
)
def test_reported_log_prob_is_the_teacher_forced_log_likelihood(spec):
    generator = tiny_generator(1, attention="bahdanau")
    decoded = generator.generate(SOURCE, spec, knobs(max_length=6))
    flat = decoded.tokens.reshape(-1, decoded.tokens.shape[-1])
    sources = np.repeat(SOURCE, spec.width, axis=0)
    teacher_forced = generator.score(sources, flat).reshape(decoded.log_probs.shape)
    np.testing.assert_allclose(decoded.log_probs, teacher_forced, atol=1e-4)


def test_teacher_forcing_under_a_specificity_weight_scores_as_the_loop_does():
    nidf = np.linspace(0.0, 1.0, VOCAB, dtype=np.float32)
    generator = Generator(tiny_generator(1).model, nidf=nidf)
    spec = SearchSpec(strategy="beam", width=3, weight_specificity=True)
    decoded = generator.generate(SOURCE, spec, knobs(max_length=6, specificity=2.0))
    flat = decoded.tokens.reshape(-1, decoded.tokens.shape[-1])
    sources = np.repeat(SOURCE, spec.width, axis=0)
    weighted = generator.score(sources, flat, specificity=2.0).reshape(decoded.log_probs.shape)
    np.testing.assert_allclose(decoded.log_probs, weighted, atol=1e-4)
    plain = generator.score(sources, flat).reshape(decoded.log_probs.shape)
    assert np.abs(plain - weighted).min() > 1e-3
    with pytest.raises(ValueError, match="needs the NIDF"):
        tiny_generator(1).score(sources, flat, specificity=2.0)


def test_scoring_by_length_groups_gives_the_scores_of_one_padded_batch(monkeypatch):
    import chatbot.decoding.generator as generator_module

    generator = tiny_generator(1)
    rng = np.random.default_rng(0)
    sources = np.repeat(SOURCE, 10, axis=0)
    targets = np.full((20, 21), PAD_ID, np.int32)
    for row, length in enumerate(rng.integers(0, 20, size=20)):
        targets[row, :length] = rng.choice(REAL, length)
        targets[row, length] = EOS_ID
    whole = generator._scorer(
        tf.constant(sources), tf.constant(targets), tf.constant(0.0)
    ).numpy()  # every row padded to the longest, in one call
    np.testing.assert_allclose(generator.score(sources, targets), whole, atol=1e-5)
    monkeypatch.setattr(generator_module, "SCORE_CHUNK_LOGITS", 3 * 8 * VOCAB)
    np.testing.assert_allclose(generator.score(sources, targets), whole, atol=1e-5)
    assert generator.score(sources[:0], targets[:0]).shape == (0,)


@pytest.mark.parametrize("min_length", [0, 1, 2])
def test_a_beam_that_never_prunes_finds_the_brute_force_best(min_length):
    generator = tiny_generator(2)
    decoded = generator.generate(
        SOURCE, SearchSpec("beam", 100), knobs(max_length=3, min_length=min_length)
    )
    for row in range(len(SOURCE)):
        exhaustive = brute_force(generator, SOURCE[row], 3, min_length)
        best = sorted(exhaustive, key=exhaustive.get, reverse=True)[:10]
        assert replies(decoded, row, 10) == best
        np.testing.assert_allclose(
            decoded.log_probs[row, :10], [exhaustive[b] for b in best], atol=1e-4
        )


def test_length_penalty_favours_longer_replies():
    generator = tiny_generator(2)
    plain = generator.generate(SOURCE, SearchSpec("beam", 100), knobs(length_penalty=0.0))
    normalized = generator.generate(SOURCE, SearchSpec("beam", 100), knobs(length_penalty=2.0))
    assert normalized.lengths[:, 0].mean() >= plain.lengths[:, 0].mean()
    expected = normalized.log_probs / ((5.0 + normalized.lengths + 1) / 6.0) ** 2.0
    np.testing.assert_allclose(normalized.scores, expected, rtol=1e-5)
    assert (np.diff(normalized.scores, axis=1) <= 1e-6).all()  # best first


def test_min_length_is_honoured_and_eos_ends_every_hypothesis():
    generator = tiny_generator(3)
    for spec in (SearchSpec("greedy"), SearchSpec("beam", 5), SearchSpec("sample", 4)):
        decoded = generator.generate(SOURCE, spec, knobs(max_length=7, min_length=4))
        assert (decoded.lengths >= 4).all()
        for tokens, length in zip(
            decoded.tokens.reshape(-1, 8), decoded.lengths.reshape(-1), strict=True
        ):
            assert tokens[length] == EOS_ID
            assert (tokens[length + 1 :] == PAD_ID).all()
            assert EOS_ID not in tokens[:length] and PAD_ID not in tokens[:length]


@pytest.mark.parametrize(
    "spec", [SearchSpec("greedy"), SearchSpec("beam", 3), SearchSpec("sample", 3)]
)
def test_a_reply_the_rules_leave_no_token_ends_with_eos(spec):
    """With each of the four real tokens allowed once and EOS banned until six tokens, every
    hypothesis runs out after four: it ends there with EOS, and its log-probability is still
    the model's, EOS included."""
    generator = tiny_generator(1)
    spec = SearchSpec(spec.strategy, spec.width, no_repeat_ngram=1)
    decoded = generator.generate(SOURCE, spec, knobs(max_length=8, min_length=6))
    for row in range(2):
        assert [sorted(reply) for reply in replies(decoded, row)] == [REAL] * spec.width
        expected = generator.score(
            np.repeat(SOURCE[row : row + 1], spec.width, axis=0), decoded.tokens[row]
        )
        np.testing.assert_allclose(decoded.log_probs[row], expected, atol=1e-4)


@pytest.mark.parametrize("spec", [SearchSpec("greedy"), SearchSpec("beam", 3)])
def test_finish_reasons_say_whether_max_length_forced_the_end(spec):
    generator = tiny_generator(0)
    for min_length in (0, 4):
        decoded = generator.generate(SOURCE, spec, knobs(max_length=4, min_length=min_length))
        forced = decoded.lengths >= 4
        assert forced.all() or min_length < 4
        expected = np.where(forced, FinishReason.LENGTH, FinishReason.EOS)
        np.testing.assert_array_equal(decoded.finish_reasons, expected)


def test_same_seed_same_sample_other_seed_other_sample():
    generator = tiny_generator(4)
    spec = SearchSpec("sample", 4)
    first = generator.generate(SOURCE, spec, knobs(max_length=8, seed=[7, 7]))
    again = generator.generate(SOURCE, spec, knobs(max_length=8, seed=[7, 7]))
    other = generator.generate(SOURCE, spec, knobs(max_length=8, seed=[8, 9]))
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert not np.array_equal(first.tokens, other.tokens)


def test_top_k_one_sampling_is_greedy():
    generator = tiny_generator(4)
    greedy = generator.generate(SOURCE, SearchSpec("greedy"), knobs(max_length=8))
    sampled = generator.generate(SOURCE, SearchSpec("sample", 1), knobs(max_length=8, top_k=1))
    np.testing.assert_array_equal(greedy.tokens, sampled.tokens)


def test_attention_weights_come_back_for_each_reply_step():
    generator = tiny_generator(5)
    decoded = generator.generate(
        SOURCE, SearchSpec("beam", 3, return_attention=True), knobs(max_length=5)
    )
    assert decoded.attention.shape == (2, 3, 6, 4)
    step_sums = decoded.attention.sum(-1)
    for row in range(2):
        for hyp in range(3):
            live = decoded.lengths[row, hyp] + 1
            np.testing.assert_allclose(step_sums[row, hyp, :live], 1.0, atol=1e-5)
            assert (decoded.attention[row, hyp, live:] == 0).all()
    assert (decoded.attention[1, :, :, 3] == 0).all()  # padding gets no attention


def _ngrams(seq, n):
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


CANONICAL = np.array([0, 1, 2, 3, 4, 5, 6, 5, 6], np.int32)  # 7 reads as 5, 8 as 6


@pytest.mark.parametrize("canonical", [False, True])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 1),
    n=st.integers(1, 3),
    strategy=st.sampled_from(["greedy", "beam", "sample"]),
)
def test_no_repeat_ngram_never_emits_a_repeated_ngram(seed, n, strategy, canonical):
    """Nor one that only reads the same, when the generator knows which ids do."""
    generator = tiny_generator(seed)
    reading = np.arange(VOCAB)
    if canonical:
        generator, reading = Generator(generator.model, canonical_ids=CANONICAL), CANONICAL
    spec = SearchSpec(strategy, 1 if strategy == "greedy" else 3, no_repeat_ngram=n)
    decoded = generator.generate(SOURCE, spec, knobs(max_length=10, min_length=0))
    for row in range(2):
        for reply in replies(decoded, row):
            grams = _ngrams(reading[list(reply)].tolist(), n)
            assert len(grams) == len(set(grams)), reply


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1), n=st.integers(1, 2))
def test_context_ngrams_are_never_copied(seed, n):
    generator = tiny_generator(seed)
    spec = SearchSpec("beam", 3, block_context_ngram=n)
    decoded = generator.generate(SOURCE, spec, knobs(max_length=8, min_length=0))
    for row in range(2):
        context = [t for t in SOURCE[row].tolist() if t in REAL]
        for reply in replies(decoded, row):
            assert not set(_ngrams(reply, n)) & set(_ngrams(context, n))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1), strategy=st.sampled_from(["greedy", "beam", "sample"]))
def test_banned_phrases_never_appear_and_beam_one_stays_greedy(seed, strategy):
    generator = tiny_generator(seed)
    banned = ((6,), (7, 8), (5, 5, 5))
    spec = SearchSpec(strategy, 1 if strategy == "greedy" else 2, banned=banned)
    decoded = generator.generate(SOURCE, spec, knobs(max_length=10))
    for row in range(2):
        for reply in replies(decoded, row):
            for phrase in banned:
                assert phrase not in _ngrams(reply, len(phrase))
    greedy = generator.generate(SOURCE, SearchSpec("greedy", banned=banned), knobs(max_length=10))
    beam = generator.generate(SOURCE, SearchSpec("beam", 1, banned=banned), knobs(max_length=10))
    np.testing.assert_array_equal(greedy.tokens, beam.tokens)


def test_repetition_penalty_follows_keskar_et_al():
    logits = tf.constant([[2.0, -1.0, 0.5, 3.0, -2.0]])
    tokens = tf.constant([[0, 3, 4, 2]])  # only the first two are history yet
    got = repetition_penalty(logits, tokens, tf.constant(2), tf.constant(4.0)).numpy()
    np.testing.assert_allclose(got, [[2.0 / 4, -1.0, 0.5, 3.0 / 4, -2.0]])
    negative = repetition_penalty(logits, tf.constant([[1, 4]]), tf.constant(2), tf.constant(4.0))
    np.testing.assert_allclose(negative.numpy(), [[2.0, -4.0, 0.5, 3.0, -8.0]])


def test_repetition_penalty_lowers_a_repeated_tokens_probability():
    generator = tiny_generator(6)
    spec = SearchSpec("greedy", penalize_repeats=True)
    plain = generator.generate(SOURCE, SearchSpec("greedy"), knobs(max_length=12, min_length=12))
    penalized = generator.generate(
        SOURCE, spec, knobs(max_length=12, min_length=12, repetition_penalty=5.0)
    )

    def distinct(decoded):
        return sum(len(set(r)) for row in range(2) for r in replies(decoded, row))

    assert distinct(penalized) >= distinct(plain)


def test_xla_decoding_pads_the_source_and_gives_the_same_replies():
    graph = tiny_generator(7)
    auto = Generator(graph.model, jit_compile="auto", xla_max_rows=8)
    assert auto.uses_xla(1, 8) and not auto.uses_xla(1, 9)
    assert auto.uses_xla(3, 2) and not auto.uses_xla(5, 2)  # 3 rows pad to 4, 5 to 8
    xla = Generator(graph.model, jit_compile=True)
    shapes = auto.compile_shapes(SearchSpec("greedy"), knobs(), max_rows=5, max_length=20)
    assert shapes == 4 * 2  # rows 1, 2, 4, 8 (5 pads to 8); lengths 16, 32
    three_rows = np.concatenate([SOURCE, SOURCE[:1]])  # padded to four rows
    for spec, source in itertools.product(
        (SearchSpec("greedy"), SearchSpec("beam", 3)), (SOURCE, three_rows)
    ):
        expected = graph.generate(source, spec, knobs(max_length=6))
        got = xla.generate(source, spec, knobs(max_length=6))
        assert got.tokens.shape == expected.tokens.shape
        np.testing.assert_array_equal(got.tokens, expected.tokens)
        np.testing.assert_allclose(got.log_probs, expected.log_probs, atol=1e-4)


def test_xla_sampling_with_a_nucleus_compiles_and_keeps_to_it():
    """The nucleus filter's per-row fallback is a loop inside the decoding loop; XLA must
    compile it for one row and for several (the server decodes small batches with XLA) over a
    vocabulary larger than the sorted head, and the draws must stay inside the nucleus: with
    top_p tiny only the likeliest token is left, so sampling is greedy."""
    keras.utils.set_random_seed(0)
    model = Seq2Seq(ModelConfig(embedding_dim=6, hidden_size=8, attention_units=4), 2 * 64)
    model.build()
    graph, xla = Generator(model), Generator(model, jit_compile=True)
    for source, top_p in itertools.product((SOURCE[:1], SOURCE), (1e-6, 0.7)):
        spec, settings = SearchSpec("sample", 1), knobs(max_length=6, top_p=top_p)
        sampled = xla.generate(source, spec, settings)
        assert sampled.tokens.shape[:2] == (len(source), 1)
        if top_p < 1e-3:
            greedy = graph.generate(source, SearchSpec("greedy"), settings)
            np.testing.assert_array_equal(sampled.tokens[:, 0], greedy.tokens[:, 0])
