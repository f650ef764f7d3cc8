"""Attention layers against the textbook equations written out in NumPy, plus masking, errors and
Keras-native saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from chatbot.errors import ConfigError
from chatbot.model.attention import ATTENTION_TYPES, Attention, make_attention

B, S, T, DQ, UNITS = 3, 6, 4, 8, 5
LENGTHS = (S, 4, 1)  # real tokens per source row; the rest is padding
KINDS = ATTENTION_TYPES[1:]


def memory_dim(kind: str) -> int:
    """Dot scores need equal sizes; the others get a different one so a swapped axis shows."""
    return DQ if kind == "luong_dot" else 7


def mask_of(lengths: tuple[int, ...]) -> np.ndarray:
    return np.arange(S)[None, :] < np.asarray(lengths)[:, None]


def random_layer(kind: str, rng: np.random.Generator) -> Attention:
    """A built layer whose every weight holds random normal values, not the initializer's."""
    layer = make_attention(kind, UNITS)
    layer.build((B, DQ), (B, S, memory_dim(kind)))
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    return layer


def random_inputs(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    query = rng.normal(size=(B, T, DQ)).astype("float32")
    memory = rng.normal(size=(B, S, memory_dim(kind))).astype("float32")
    return query, memory


def textbook_score(layer: Attention, h: np.ndarray, m: np.ndarray) -> float:
    """e(h_t, m_s) as the papers write it, with W as [out, in] matrices."""
    w = {v.name: np.asarray(v, dtype="float64") for v in layer.weights}
    if layer.kind == "luong_dot":
        return h @ m
    if layer.kind == "luong_general":
        return h @ w["memory_kernel"].T @ m
    if layer.kind == "bahdanau":
        return w["score_vector"] @ np.tanh(w["query_kernel"].T @ h + w["memory_kernel"].T @ m)
    w_a = np.concatenate([w["query_kernel"].T, w["memory_kernel"].T], axis=1)
    return w["score_vector"] @ np.tanh(w_a @ np.concatenate([h, m]))


def textbook_attention(
    layer: Attention, query: np.ndarray, memory: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Context [B, T, Dm] and weights [B, T, S]: softmax over real positions, c = sum_s a_s m_s."""
    weights = np.zeros((B, T, S))
    for b in range(B):
        real = np.flatnonzero(mask[b])
        for t in range(T):
            if real.size == 0:
                continue
            scores = np.array([textbook_score(layer, query[b, t], memory[b, s]) for s in real])
            exp = np.exp(scores - scores.max())
            weights[b, t, real] = exp / exp.sum()
    return weights @ memory, weights


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", ["all", "single"])
def test_matches_the_textbook_equation(kind, steps):
    rng = np.random.default_rng(0)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    expected_context, expected_weights = textbook_attention(layer, query, memory, mask)
    keys = layer.precompute(memory)
    if steps == "all":
        context, weights = layer(query, memory, keys, mask)
    else:
        per_step = [layer(query[:, t], memory, keys, mask) for t in range(T)]
        context = np.stack([np.asarray(c) for c, _ in per_step], axis=1)
        weights = np.stack([np.asarray(a) for _, a in per_step], axis=1)
    np.testing.assert_allclose(weights, expected_weights, rtol=0, atol=1e-5)
    np.testing.assert_allclose(context, expected_context, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_and_all_steps_give_the_same_numbers(kind):
    """Same numbers up to float rounding: TF's fused CPU softmax can differ by one ulp between
    batch shapes, so bitwise equality is not something the backend promises."""
    rng = np.random.default_rng(1)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    keys = layer.precompute(memory)
    context, weights = layer(query, memory, keys, mask)
    for t in range(T):
        step_context, step_weights = layer(query[:, t], memory, keys, mask)
        np.testing.assert_allclose(step_weights, weights[:, t], rtol=0, atol=1e-6)
        np.testing.assert_allclose(step_context, context[:, t], rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_keys_default_to_the_precomputed_ones(kind):
    rng = np.random.default_rng(2)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    given = layer(query, memory, layer.precompute(memory), mask)
    derived = layer(query, memory, memory_mask=mask)
    for a, b in zip(given, derived, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kind", "width"),
    [("bahdanau", UNITS), ("luong_concat", UNITS), ("luong_general", DQ), ("luong_dot", DQ)],
)
def test_precompute_shapes(kind, width):
    rng = np.random.default_rng(3)
    layer = random_layer(kind, rng)
    _, memory = random_inputs(kind, rng)
    assert tuple(layer.precompute(memory).shape) == (B, S, width)


def test_precompute_before_build_is_refused():
    layer = make_attention("bahdanau", UNITS)
    with pytest.raises(ValueError, match="not built"):
        layer.precompute(np.zeros((B, S, UNITS), "float32"))


@pytest.mark.parametrize("kind", KINDS)
def test_padded_positions_weigh_exactly_zero_and_real_ones_sum_to_one(kind):
    rng = np.random.default_rng(4)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    _, weights = layer(query, memory, memory_mask=mask)
    weights = np.asarray(weights)
    padded = np.broadcast_to(~mask[:, None, :], weights.shape)
    assert np.all(weights[padded] == 0.0)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_values_do_not_change_the_context(kind):
    rng = np.random.default_rng(5)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    other = memory.copy()
    other[~mask] = 100 * rng.normal(size=other[~mask].shape)
    context, _ = layer(query, memory, memory_mask=mask)
    other_context, _ = layer(query, other, memory_mask=mask)
    np.testing.assert_array_equal(context, other_context)


@pytest.mark.parametrize("kind", KINDS)
def test_a_fully_padded_row_gives_zeros_not_nan(kind):
    rng = np.random.default_rng(6)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    mask = mask_of((S, 0, 2))
    context, weights = layer(query, memory, memory_mask=mask)
    context, weights = np.asarray(context), np.asarray(weights)
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    assert np.all(context[1] == 0.0) and np.all(weights[1] == 0.0)
    np.testing.assert_allclose(weights[[0, 2]].sum(axis=-1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_no_mask_means_every_position_is_real(kind):
    rng = np.random.default_rng(7)
    layer = random_layer(kind, rng)
    query, memory = random_inputs(kind, rng)
    unmasked = layer(query, memory)
    all_real = layer(query, memory, memory_mask=mask_of((S,) * B))
    for a, b in zip(unmasked, all_real, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_precision_keeps_float16_outputs_and_exact_zeros(kind):
    rng = np.random.default_rng(8)
    layer = Attention(kind, UNITS, dtype="mixed_float16")
    query, memory = random_inputs(kind, rng)
    mask = mask_of((S, 0, 2))
    context, weights = layer(query, memory, memory_mask=mask)
    assert context.dtype == weights.dtype == "float16"
    weights = np.asarray(weights, dtype="float32")
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(np.asarray(context, "float32")))
    assert np.all(weights[np.broadcast_to(~mask[:, None, :], weights.shape)] == 0.0)
    np.testing.assert_allclose(weights[[0, 2]].sum(axis=-1), 1.0, rtol=0, atol=2e-3)


def test_luong_dot_with_different_sizes_names_both():
    layer = make_attention("luong_dot", UNITS)
    query = np.zeros((B, DQ), "float32")
    memory = np.zeros((B, S, 7), "float32")
    with pytest.raises(ConfigError, match=r"\(8\).*\(7\)"):
        layer(query, memory)


def test_unknown_kind_names_it_and_the_allowed_ones():
    with pytest.raises(ConfigError) as error:
        make_attention("multiplicative", UNITS)
    message = str(error.value)
    assert "multiplicative" in message
    assert all(kind in message for kind in ATTENTION_TYPES)


def test_none_means_no_attention():
    assert make_attention("none", UNITS) is None


def test_additive_attention_needs_positive_units():
    with pytest.raises(ConfigError, match="units"):
        make_attention("bahdanau", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_config_round_trip(kind):
    layer = make_attention(kind, UNITS, name="attn")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, Attention)
    assert (restored.kind, restored.units, restored.name) == (kind, UNITS, "attn")
    assert restored.get_config() == layer.get_config()


@pytest.mark.parametrize("kind", KINDS)
def test_saved_model_loads_in_safe_mode_with_identical_outputs(kind, tmp_path):
    rng = np.random.default_rng(9)
    query_in = keras.Input((T, DQ))
    memory_in = keras.Input((S, memory_dim(kind)))
    mask_in = keras.Input((S,), dtype="bool")
    outputs = make_attention(kind, UNITS)(query_in, memory_in, memory_mask=mask_in)
    model = keras.Model([query_in, memory_in, mask_in], list(outputs))
    for weight in model.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    inputs = [*random_inputs(kind, rng), mask_of(LENGTHS)]
    for a, b in zip(model(inputs), loaded(inputs), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["luong_dot", "luong_general"])
def test_scaled_scores_are_the_textbook_scores_over_root_d(kind):
    rng = np.random.default_rng(4)
    layer = random_layer(kind, rng)
    scaled = Attention.from_config({**layer.get_config(), "scale": True})
    scaled.build((B, DQ), (B, S, memory_dim(kind)))
    scaled.set_weights(layer.get_weights())
    query, memory = random_inputs(kind, rng)
    mask = mask_of(LENGTHS)
    # dot and general scores are linear in the query: e(h / sqrt(d), m) = e(h, m) / sqrt(d)
    expected_context, expected_weights = textbook_attention(layer, query / DQ**0.5, memory, mask)
    context, weights = scaled(query, memory, memory_mask=mask)
    np.testing.assert_allclose(np.asarray(weights), expected_weights, atol=1e-5)
    np.testing.assert_allclose(np.asarray(context), expected_context, atol=1e-5)
    assert scaled.get_config()["scale"] is True


@pytest.mark.parametrize("kind", ["bahdanau", "luong_concat"])
def test_additive_scores_refuse_scaling(kind):
    with pytest.raises(ConfigError, match=f"not '{kind}'"):
        make_attention(kind, UNITS, scale=True)
