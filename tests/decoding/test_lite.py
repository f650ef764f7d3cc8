import dataclasses

import keras
import numpy as np
import pytest

from chatbot.config import ModelConfig
from chatbot.decoding.generator import Generator
from chatbot.decoding.lite import convert
from chatbot.decoding.search import SearchSpec
from chatbot.errors import ConfigError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import EOS_ID, PAD_ID
from tests.decoding.test_search import knobs as search_knobs

VOCAB = 40
SOURCES = np.array(
    [[5, 6, 7, 8, 9, EOS_ID], [30, 6, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [12, EOS_ID] + [PAD_ID] * 4],
    np.int32,
)


@pytest.fixture(scope="module")
def model() -> Seq2Seq:
    keras.utils.set_random_seed(3)
    config = ModelConfig(embedding_dim=8, hidden_size=12, attention="luong_general")
    model = Seq2Seq(config, VOCAB)
    model.build()
    return model


def knobs(**changes):
    """test_search's knobs with longer replies, a length penalty and a gentler temperature."""
    longer = dict(max_length=7, min_length=2, length_penalty=0.6, temperature=0.9, seed=[4, 5])
    return search_knobs(**{**longer, **changes})


CASES = [
    (SearchSpec("greedy"), {}),
    (SearchSpec("greedy", block_context_ngram=1, banned=((8, 9), (11,))), {}),
    (SearchSpec("greedy", penalize_repeats=True), {"repetition_penalty": 1.5}),
    (SearchSpec("beam", 3, no_repeat_ngram=2), {}),
    (SearchSpec("sample", 2, no_repeat_ngram=2), {"top_p": 0.8}),
    (SearchSpec("sample"), {"top_k": 5, "temperature": 1.3}),
    (SearchSpec("beam", 3, weight_specificity=True), {"specificity": 4.0}),
]


@pytest.mark.parametrize(("spec", "changes"), CASES)
def test_lite_programs_decode_what_tensorflow_decodes(model, spec, changes):
    canonical = np.arange(VOCAB, dtype=np.int32)
    canonical[20] = 21  # two ids that n-gram blocking treats as one
    nidf = np.linspace(0.0, 1.0, VOCAB, dtype=np.float32)
    tf_generator = Generator(model, canonical_ids=canonical, nidf=nidf)
    lite = Generator(model, canonical_ids=canonical, nidf=nidf, runtime="lite")
    for row in range(len(SOURCES)):
        source = SOURCES[row : row + 1, : int(np.sum(SOURCES[row] != PAD_ID))]
        assert lite.uses_lite(1, spec)
        expected = tf_generator.generate(source, spec, knobs(**changes))
        decoded = lite.generate(source, spec, knobs(**changes))
        np.testing.assert_array_equal(decoded.tokens, expected.tokens)
        np.testing.assert_array_equal(decoded.lengths, expected.lengths)
        np.testing.assert_array_equal(decoded.finish_reasons, expected.finish_reasons)
        np.testing.assert_allclose(decoded.log_probs, expected.log_probs, atol=1e-4)
        np.testing.assert_allclose(decoded.scores, expected.scores, atol=1e-4)
        assert decoded.attention is None


def test_one_program_serves_every_setting_of_the_knobs(model):
    lite = Generator(model, runtime="lite")
    spec = SearchSpec("sample")
    first = lite.generate(SOURCES[:1], spec, knobs(max_length=3, seed=[1, 1]))
    longer = lite.generate(SOURCES[:1], spec, knobs(max_length=9, min_length=9, seed=[2, 2]))
    again = lite.generate(SOURCES[:1], spec, knobs(max_length=3, seed=[1, 1]))
    assert len(lite._lite_loops) == 1
    assert first.tokens.shape[-1] == 4 and longer.tokens.shape[-1] == 10
    assert longer.lengths[0, 0] == 9
    np.testing.assert_array_equal(first.tokens, again.tokens)


def test_attention_and_batches_stay_on_tensorflow(model):
    lite = Generator(model, runtime="lite")
    with_attention = dataclasses.replace(SearchSpec("greedy"), return_attention=True)
    assert not lite.uses_lite(1, with_attention)
    assert not lite.uses_lite(2, SearchSpec("greedy"))
    assert lite.uses_lite(1, SearchSpec("beam", 4))
    decoded = lite.generate(SOURCES[:1], with_attention, knobs())
    assert decoded.attention.shape[:2] == (1, 1)
    batch = lite.generate(SOURCES, SearchSpec("greedy"), knobs())
    assert batch.tokens.shape[0] == 3
    assert not lite._lite_loops


def test_compile_shapes_converts_one_lite_program_for_every_length(model):
    lite = Generator(model, runtime="lite", jit_compile="auto", xla_max_rows=2)
    spec = SearchSpec("greedy")
    assert lite.compile_shapes(spec, knobs(), max_rows=2, max_length=20) == 3  # Lite, XLA x 2
    assert list(lite._lite_loops) == [spec]
    assert lite.uses_xla(2, 1) and not lite.uses_lite(2, spec)
    for length in (1, 5, 2, 9):  # the interpreter resizes for each new length
        source = np.full((1, length), 7, np.int32)
        expected = Generator(model).generate(source, spec, knobs())
        np.testing.assert_array_equal(lite.generate(source, spec, knobs()).tokens, expected.tokens)
    assert len(lite._lite_loops) == 1


def test_an_unknown_runtime_is_a_config_error(model):
    with pytest.raises(ConfigError, match="runtime 'onnx' is unknown; expected one of tf, lite"):
        Generator(model, runtime="onnx")


def test_int8_weights_make_a_smaller_program_that_scores_its_replies_nearly_as_tensorflow():
    keras.utils.set_random_seed(5)
    model = Seq2Seq(ModelConfig(embedding_dim=32, hidden_size=48), 300)  # matrices >= 1024 weights
    model.build()
    spec = SearchSpec("greedy")
    floats = convert(model, spec, 1, None)
    ints = convert(model, spec, 1, None, quantize=True)
    assert len(ints) < 0.5 * len(floats)
    tf_generator = Generator(model)
    lite = Generator(model, runtime="lite-int8")
    for row in SOURCES:
        source = row[None, : int(np.sum(row != PAD_ID))]
        decoded = lite.generate(source, spec, knobs(max_length=6, min_length=6))
        targets = decoded.tokens[:, 0, : decoded.lengths[0, 0] + 1]  # the reply and its EOS
        assert targets[0, -1] == EOS_ID
        expected = tf_generator.score(source, targets)
        np.testing.assert_allclose(decoded.log_probs[:, 0], expected, atol=0.05)


def test_only_the_most_recently_used_programs_are_kept(model, monkeypatch):
    monkeypatch.setattr("chatbot.decoding.generator.LITE_MAX_PROGRAMS", 2)
    lite = Generator(model, runtime="lite")
    specs = [SearchSpec("greedy", banned=((i,),)) for i in (10, 11, 12)]
    for spec in (specs[0], specs[1], specs[0], specs[2]):
        lite.generate(SOURCES[:1], spec, knobs())
    assert list(lite._lite_loops) == [specs[0], specs[2]]  # specs[1] was the least recent
