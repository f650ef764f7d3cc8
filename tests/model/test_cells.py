"""Recurrent cells against the textbook equations written out in NumPy, whole masked sequences
against the step cell run by hand, Bidirectional, errors, and Keras-native saving."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from chatbot.errors import ConfigError
from chatbot.model.cells import (
    CELL_TYPES,
    LSTMFamilyCell,
    ProjectedRNN,
    ResetAfterGRUCell,
    VanillaRNNCell,
    make_cell,
    make_rnn,
    state_names,
)

B, F, UNITS, T = 3, 5, 4, 6
LENGTHS = (T, 4, 1)  # real steps per row; the rest is padding
TOLERANCE = 1e-5
VARIANTS = [(cell_type, norm) for cell_type in CELL_TYPES for norm in (False, True)]
CELL_CASES = [(cell_type, "tanh", norm) for cell_type, norm in VARIANTS] + [
    ("rnn", "relu", False),
    ("rnn", "relu", True),
]
CUSTOM_CASES = [
    case for case in CELL_CASES if case[2] or case[0] in ("lstm_peephole", "lstm_coupled")
]
CUSTOM_CLASSES = (VanillaRNNCell, ResetAfterGRUCell, LSTMFamilyCell)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def layer_norm(x: np.ndarray, norm: keras.layers.LayerNormalization) -> np.ndarray:
    """LN over the last axis with the layer's own gain, bias and epsilon."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    gamma, beta = np.asarray(norm.gamma, "float64"), np.asarray(norm.beta, "float64")
    return (x - mean) / np.sqrt(var + norm.epsilon) * gamma + beta


class Weights:
    """A cell's weights in float64, whichever layout it keeps its biases in."""

    def __init__(self, cell: keras.layers.Layer) -> None:
        def arr(variable: keras.Variable) -> np.ndarray:
            return np.asarray(variable, dtype="float64")

        self.cell = cell
        self.W, self.U = arr(cell.kernel), arr(cell.recurrent_kernel)
        bias = arr(cell.bias)
        if bias.ndim == 2:  # Keras' GRUCell (reset_after): rows are the input and recurrent biases
            self.b_x, self.b_h = bias
        else:
            self.b_x = bias
            recurrent = getattr(cell, "recurrent_bias", None)
            self.b_h = np.zeros_like(bias) if recurrent is None else arr(recurrent)
        self.norm = getattr(cell, "layer_norm", False)
        self.peephole = {gate: arr(p) for gate, p in getattr(cell, "peepholes", {}).items()}

    def from_input(self, x: np.ndarray) -> np.ndarray:
        """The input half of every gate's pre-activation: LN(W x) + b (Ba et al. 2016, eq. 20)."""
        wx = x @ self.W
        return (layer_norm(wx, self.cell.input_norm) if self.norm else wx) + self.b_x

    def from_state(self, h: np.ndarray) -> np.ndarray:
        """The recurrent half: LN(U h), plus the recurrent bias where the cell has one."""
        uh = h @ self.U
        return (layer_norm(uh, self.cell.recurrent_norm) if self.norm else uh) + self.b_h

    def peep(self, gate: str, c: np.ndarray) -> np.ndarray:
        return self.peephole[gate] * c if gate in self.peephole else np.zeros_like(c)


def textbook_rnn(w: Weights, activation: str, x: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
    """h_t = act(W x_t + b + U h_{t-1})."""
    a = w.from_input(x) + w.from_state(h)
    return [np.tanh(a) if activation == "tanh" else np.maximum(a, 0.0)]


def textbook_gru(w: Weights, x: np.ndarray, h: np.ndarray) -> list[np.ndarray]:
    """Keras' reset_after GRU, gates z, r, h:
    z = s(W_z x + b_xz + U_z h + b_hz), r = s(W_r x + b_xr + U_r h + b_hr),
    h~ = tanh(W_h x + b_xh + r * (U_h h + b_hh)), h_t = z * h + (1 - z) * h~."""
    x_z, x_r, x_h = np.split(w.from_input(x), 3, axis=-1)
    h_z, h_r, h_h = np.split(w.from_state(h), 3, axis=-1)
    z = sigmoid(x_z + h_z)
    r = sigmoid(x_r + h_r)
    candidate = np.tanh(x_h + r * h_h)
    return [z * h + (1.0 - z) * candidate]


def textbook_lstm(
    w: Weights, x: np.ndarray, h: np.ndarray, c: np.ndarray, *, coupled: bool
) -> list[np.ndarray]:
    """i = s(a_i + p_i c), f = s(a_f + p_f c), c_t = f c + i tanh(a_c), o = s(a_o + p_o c_t),
    h_t = o tanh(LN(c_t)); coupled: i = 1 - f. Without peepholes p = 0; without LN, LN = id."""
    a = w.from_input(x) + w.from_state(h)
    if coupled:
        a_f, a_c, a_o = np.split(a, 3, axis=-1)
    else:
        a_i, a_f, a_c, a_o = np.split(a, 4, axis=-1)
    f = sigmoid(a_f + w.peep("forget", c))
    i = 1.0 - f if coupled else sigmoid(a_i + w.peep("input", c))
    c_t = f * c + i * np.tanh(a_c)
    o = sigmoid(a_o + w.peep("output", c_t))
    normed = layer_norm(c_t, w.cell.cell_norm) if w.norm else c_t
    return [o * np.tanh(normed), c_t]


def textbook_step(
    cell_type: str, activation: str, cell: keras.layers.Layer, x: np.ndarray, states: list
) -> list[np.ndarray]:
    w = Weights(cell)
    x = x.astype("float64")
    states = [s.astype("float64") for s in states]
    if cell_type == "rnn":
        return textbook_rnn(w, activation, x, *states)
    if cell_type == "gru":
        return textbook_gru(w, x, *states)
    return textbook_lstm(w, x, *states, coupled=cell_type == "lstm_coupled")


def randomize(layer: keras.layers.Layer, rng: np.random.Generator) -> None:
    """Random normal values in every weight, so no initializer's zero or one hides a mistake."""
    for weight in layer.weights:
        weight.assign(0.7 * rng.normal(size=weight.shape).astype("float32"))


def random_states(cell_type: str, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.normal(size=(B, UNITS)).astype("float32") for _ in state_names(cell_type)]


def padded_batch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(B, T, F)).astype("float32")
    mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    return x, mask


def run_by_hand(
    cell: keras.layers.Layer, x: np.ndarray, mask: np.ndarray, states: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Step the cell in Python: a padded step keeps the previous state. Outputs at padded steps
    are left unspecified (Keras' loop repeats the last one, cuDNN and Bidirectional give zeros)."""
    outputs = []
    for t in range(x.shape[1]):
        h, new_states = cell(x[:, t], states)
        keep = mask[:, t, None]
        states = [np.where(keep, new, old) for new, old in zip(new_states, states, strict=True)]
        outputs.append(np.asarray(h))
    return np.stack(outputs, axis=1), states


@pytest.mark.parametrize(("cell_type", "activation", "norm"), CELL_CASES)
def test_one_step_matches_textbook_equations(cell_type: str, activation: str, norm: bool) -> None:
    rng = np.random.default_rng(0)
    cell = make_cell(cell_type, UNITS, activation=activation, layer_norm=norm)
    x = rng.normal(size=(B, F)).astype("float32")
    states = random_states(cell_type, rng)
    cell.build(x.shape)
    randomize(cell, rng)

    h, new_states = cell(x, states)

    expected = textbook_step(cell_type, activation, cell, x, states)
    assert len(new_states) == len(state_names(cell_type))
    np.testing.assert_allclose(h, expected[0], atol=TOLERANCE, rtol=0)
    for got, want in zip(new_states, expected, strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    ("custom_class", "stock_class", "options"),
    [
        (VanillaRNNCell, keras.layers.SimpleRNNCell, {"activation": "relu"}),
        (ResetAfterGRUCell, keras.layers.GRUCell, {}),
        (LSTMFamilyCell, keras.layers.LSTMCell, {}),
    ],
    ids=["rnn", "gru", "lstm"],
)
def test_custom_cells_without_layer_norm_equal_keras_cells(
    custom_class: type, stock_class: type, options: dict
) -> None:
    custom, stock = custom_class(UNITS, **options), stock_class(UNITS, **options)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, F)).astype("float32")
    states = [
        rng.normal(size=(B, UNITS)).astype("float32") for _ in np.atleast_1d(stock.state_size)
    ]
    stock.build(x.shape)
    custom.build(x.shape)
    randomize(stock, rng)
    kernel, recurrent_kernel, bias = stock.get_weights()
    custom.set_weights([kernel, recurrent_kernel, *(bias if bias.ndim == 2 else [bias])])

    for got, want in zip(custom(x, states)[1], stock(x, states)[1], strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("cell_type", ["lstm", "lstm_peephole", "lstm_coupled"])
def test_lstm_bias_starts_with_the_forget_gate_open(cell_type: str) -> None:
    cell = make_cell(cell_type, UNITS, layer_norm=True)
    cell.build((B, F))
    gates = np.split(np.asarray(cell.bias), len(cell.gates))
    for gate, block in zip(cell.gates, gates, strict=True):
        np.testing.assert_array_equal(block, 1.0 if gate == "forget" else 0.0)


def test_fused_layers_are_keras_own() -> None:
    assert type(make_rnn("rnn", UNITS, activation="relu", fused=True)) is keras.layers.SimpleRNN
    relu = make_rnn("rnn", UNITS, activation="relu", fused=True)
    assert relu.cell.activation is keras.activations.relu
    gru = make_rnn("gru", UNITS, fused=True)
    assert type(gru) is keras.layers.GRU
    assert gru.cell.reset_after
    assert type(make_rnn("lstm", UNITS, fused=True)) is keras.layers.LSTM
    for cell_type in ("lstm_peephole", "lstm_coupled"):
        assert type(make_rnn(cell_type, UNITS, fused=True).cell) is LSTMFamilyCell
    for cell_type in ("rnn", "gru", "lstm"):
        assert isinstance(
            make_rnn(cell_type, UNITS, layer_norm=True, fused=True).cell, CUSTOM_CLASSES
        )


@pytest.mark.parametrize("cell_type", CELL_TYPES)
def test_without_a_gpu_every_type_projects_its_inputs_up_front(cell_type: str) -> None:
    layer = make_rnn(cell_type, UNITS)
    assert type(layer) is ProjectedRNN
    assert isinstance(layer.cell, CUSTOM_CLASSES)


@pytest.mark.parametrize("cell_type", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_projected_layer_equals_the_fused_keras_layer(cell_type: str, go_backwards: bool) -> None:
    rng = np.random.default_rng(3)
    x, mask = padded_batch(rng)
    initial = random_states(cell_type, rng)
    fused = make_rnn(cell_type, UNITS, fused=True, go_backwards=go_backwards)
    projected = make_rnn(cell_type, UNITS, fused=False, go_backwards=go_backwards)
    fused.build(x.shape)
    projected.build(x.shape)
    randomize(fused, rng)
    kernel, recurrent_kernel, bias = fused.get_weights()
    projected.set_weights([kernel, recurrent_kernel, *(bias if bias.ndim == 2 else [bias])])
    want_outputs, *want_states = fused(x, mask=mask, initial_state=initial)
    got_outputs, *got_states = projected(x, mask=mask, initial_state=initial)
    np.testing.assert_allclose(got_outputs, want_outputs, atol=TOLERANCE, rtol=0)
    for got, want in zip(got_states, want_states, strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("cell_type", "norm"), VARIANTS)
def test_masked_sequence_equals_stepping_the_cell(cell_type: str, norm: bool) -> None:
    rng = np.random.default_rng(2)
    layer = make_rnn(cell_type, UNITS, layer_norm=norm)
    x, mask = padded_batch(rng)
    initial = random_states(cell_type, rng)
    layer.build(x.shape)
    randomize(layer, rng)

    outputs, *final = layer(x, mask=mask, initial_state=initial)

    want_outputs, want_final = run_by_hand(layer.cell, x, mask, initial)
    np.testing.assert_allclose(
        np.asarray(outputs)[mask], want_outputs[mask], atol=TOLERANCE, rtol=0
    )
    for got, want in zip(final, want_final, strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("cell_type", "norm"), VARIANTS)
@pytest.mark.parametrize("return_sequences", [True, False])
def test_output_and_state_shapes(cell_type: str, norm: bool, return_sequences: bool) -> None:
    layer = make_rnn(cell_type, UNITS, layer_norm=norm, return_sequences=return_sequences)
    outputs, *states = layer(np.zeros((B, T, F), "float32"))
    assert outputs.shape == ((B, T, UNITS) if return_sequences else (B, UNITS))
    assert [s.shape for s in states] == [(B, UNITS)] * len(state_names(cell_type))


@pytest.mark.parametrize(("cell_type", "norm"), VARIANTS)
@pytest.mark.parametrize("merge_mode", ["sum", "concat"])
def test_bidirectional_runs_each_direction_over_the_real_steps(
    cell_type: str, norm: bool, merge_mode: str
) -> None:
    rng = np.random.default_rng(3)
    layer = keras.layers.Bidirectional(make_rnn(cell_type, UNITS, layer_norm=norm), merge_mode)
    x, mask = padded_batch(rng)
    layer.build(x.shape)
    randomize(layer, rng)

    outputs, *states = layer(x, mask=mask)

    n = len(state_names(cell_type))
    assert len(states) == 2 * n
    assert outputs.shape == (B, T, UNITS if merge_mode == "sum" else 2 * UNITS)
    zeros = [np.zeros((B, UNITS), "float32")] * n
    forward, forward_final = run_by_hand(layer.forward_layer.cell, x, mask, zeros)
    backward, backward_final = run_by_hand(
        layer.backward_layer.cell, x[:, ::-1], mask[:, ::-1], zeros
    )
    backward = backward[:, ::-1]
    for got, want in zip(states, forward_final + backward_final, strict=True):
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    want = forward + backward if merge_mode == "sum" else np.concatenate([forward, backward], -1)
    np.testing.assert_allclose(np.asarray(outputs)[mask], want[mask], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("cell_type", "activation", "norm"), CUSTOM_CASES)
def test_custom_cell_config_round_trips(cell_type: str, activation: str, norm: bool) -> None:
    cell = make_cell(cell_type, UNITS, activation=activation, layer_norm=norm)
    assert isinstance(cell, CUSTOM_CLASSES)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(cell))
    assert type(restored) is type(cell)
    assert restored.get_config() == cell.get_config()


@pytest.mark.parametrize(("cell_type", "activation", "norm"), CELL_CASES)
def test_saved_model_loads_in_safe_mode_with_identical_outputs(
    cell_type: str, activation: str, norm: bool, tmp_path: Path
) -> None:
    rng = np.random.default_rng(4)
    inputs = keras.Input((T, F))
    model = keras.Model(
        inputs, make_rnn(cell_type, UNITS, activation=activation, layer_norm=norm)(inputs)
    )
    randomize(model, rng)
    x = rng.normal(size=(B, T, F)).astype("float32")
    model.save(tmp_path / "m.keras")

    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)

    for got, want in zip(loaded(x), model(x), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "call", [state_names, lambda t: make_cell(t, UNITS), lambda t: make_rnn(t, UNITS)]
)
def test_unknown_cell_type_is_a_config_error(call) -> None:
    with pytest.raises(ConfigError, match=r"'lstmm'.*'rnn', 'gru', 'lstm'"):
        call("lstmm")


def test_unknown_activation_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'sigmoid'.*'tanh', 'relu'"):
        make_rnn("rnn", UNITS, activation="sigmoid")


def test_relu_on_a_gated_cell_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'relu'.*'rnn' only"):
        make_cell("gru", UNITS, activation="relu")


def test_state_names() -> None:
    assert state_names("rnn") == state_names("gru") == ("h",)
    for cell_type in ("lstm", "lstm_peephole", "lstm_coupled"):
        assert state_names(cell_type) == ("h", "c")
