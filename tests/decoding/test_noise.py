import warnings

import numpy as np
import pytest
import tensorflow as tf

from chatbot.decoding import noise


def fmix32_reference(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's fmix32 on uint32, as published."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x85EBCA6B)
    x ^= x >> np.uint32(13)
    x *= np.uint32(0xC2B2AE35)
    x ^= x >> np.uint32(16)
    return x


def test_mix_is_murmur3_fmix32_on_the_same_bits():
    values = np.random.default_rng(0).integers(-(2**31), 2**31, 10_000).astype(np.int32)
    values[:4] = [0, -1, 2**31 - 1, -(2**31)]
    mixed = noise.mix(tf.constant(values)).numpy()
    np.testing.assert_array_equal(mixed.view(np.uint32), fmix32_reference(values.view(np.uint32)))


def test_uniform_is_open_unit_interval_flat_and_seeded():
    seed = tf.constant([3, 4])
    draws = noise.uniform(seed, tf.constant(0), [200, 500]).numpy()
    assert draws.dtype == np.float32 and draws.shape == (200, 500)
    assert draws.min() > 0.0 and draws.max() < 1.0
    counts, _ = np.histogram(draws, bins=10, range=(0.0, 1.0))
    np.testing.assert_allclose(counts / draws.size, 0.1, atol=0.005)
    np.testing.assert_array_equal(draws, noise.uniform(seed, tf.constant(0), [200, 500]).numpy())
    other_step = noise.uniform(seed, tf.constant(1), [200, 500]).numpy()
    other_seed = noise.uniform(tf.constant([3, 5]), tf.constant(0), [200, 500]).numpy()
    for other in (other_step, other_seed):
        assert np.mean(draws == other) < 0.001
        assert abs(np.corrcoef(draws.ravel(), other.ravel())[0, 1]) < 0.01


def test_categorical_follows_softmax_and_never_draws_filtered_tokens():
    probs = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = np.log(np.maximum(probs, 1e-30)).astype(np.float32)
    logits[4] = -1e9
    rows = 40_000
    batch = tf.constant(np.tile(logits, (rows, 1)))
    draws = noise.categorical(batch, tf.constant([1, 2]), tf.constant(7)).numpy()
    frequencies = np.bincount(draws, minlength=5) / rows
    assert frequencies[4] == 0.0
    # four standard errors of a binomial share at 40,000 draws
    np.testing.assert_allclose(frequencies, probs, atol=4 * np.sqrt(0.25 / rows))


def test_tensorflow_lite_draws_the_same_numbers():
    @tf.function(input_signature=[tf.TensorSpec([2], tf.int32), tf.TensorSpec([], tf.int32)])
    def draw(seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
        return noise.uniform(seed, step, [3, 1000])

    converter = tf.lite.TFLiteConverter.from_concrete_functions([draw.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inputs = {d["name"]: d["index"] for d in interpreter.get_input_details()}
    for seed, step in (([0, 0], 0), ([2**31 - 1, -5], 12)):
        interpreter.set_tensor(inputs["seed"], np.array(seed, np.int32))
        interpreter.set_tensor(inputs["step"], np.array(step, np.int32))
        interpreter.invoke()
        lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        expected = draw(tf.constant(seed), tf.constant(step)).numpy()
        np.testing.assert_array_equal(lite, expected)


@pytest.mark.parametrize("jit", [False, True])
def test_compiled_draws_match_eager(jit):
    seed, step = tf.constant([9, 1]), tf.constant(3)
    compiled = tf.function(lambda s, t: noise.uniform(s, t, [4, 50]), jit_compile=jit)
    np.testing.assert_array_equal(
        compiled(seed, step).numpy(), noise.uniform(seed, step, [4, 50]).numpy()
    )
