"""Recurrent cells by name: Keras' fused layers where they exist (the fast path), and custom cells
for layer normalization (Ba et al. 2016), peephole LSTMs (Gers & Schmidhuber 2000) and coupled
input/forget gates. Every sequence layer exposes `.cell`, the step function the decoder runs one
token at a time, sharing the layer's weights."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from chatbot.errors import ConfigError

CELL_TYPES = ("rnn", "gru", "lstm", "lstm_peephole", "lstm_coupled")
ACTIVATIONS = ("tanh", "relu")

_STOCK_LAYERS = {"rnn": keras.layers.SimpleRNN, "gru": keras.layers.GRU, "lstm": keras.layers.LSTM}
_LSTM_VARIANTS = {
    "lstm": {"peephole": False, "coupled": False},
    "lstm_peephole": {"peephole": True, "coupled": False},
    "lstm_coupled": {"peephole": False, "coupled": True},
}


def _check(cell_type: str, activation: str) -> None:
    """Raise `ConfigError` naming the bad value and the allowed ones."""
    if cell_type not in CELL_TYPES:
        raise ConfigError(f"unknown cell type {cell_type!r}; expected one of {CELL_TYPES}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if cell_type != "rnn" and activation != "tanh":
        raise ConfigError(
            f"activation {activation!r} applies to cell type 'rnn' only; "
            f"{cell_type!r} cells use 'tanh'"
        )


def state_names(cell_type: str) -> tuple[str, ...]:
    """The recurrent states of a cell type, in the order layers return them and cells take them."""
    _check(cell_type, "tanh")
    return ("h", "c") if cell_type.startswith("lstm") else ("h",)


class _ProjectedCell(keras.layers.Layer):
    """Shared by the custom cells: all gate pre-activations from one input matmul (x @ W + b) and
    one recurrent matmul (h @ U), each layer-normalized on its own when `layer_norm` is set."""

    def __init__(
        self, units: int, gates: tuple[str, ...], *, layer_norm: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.gates = gates
        self.layer_norm = layer_norm
        self.state_size = units
        self.output_size = units
        if layer_norm:
            self.input_norm = keras.layers.LayerNormalization(name="input_norm")
            self.recurrent_norm = keras.layers.LayerNormalization(name="recurrent_norm")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        width = len(self.gates) * self.units
        self.kernel = self.add_weight(
            shape=(input_shape[-1], width), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width), initializer="orthogonal", name="recurrent_kernel"
        )
        self.bias = self.add_weight(shape=(width,), initializer=self._initial_bias, name="bias")
        if self.layer_norm:
            self.input_norm.build((None, width))
            self.recurrent_norm.build((None, width))

    def _initial_bias(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        """Zeros, except a forget gate's block at one (Keras' unit_forget_bias): remember early."""
        blocks = [
            ops.ones((self.units,), dtype) if gate == "forget" else ops.zeros((self.units,), dtype)
            for gate in self.gates
        ]
        return ops.concatenate(blocks)

    def _project(self, inputs: Any, h_prev: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Per-gate input and recurrent pre-activations: LN(x @ W) + b and LN(h @ U)."""
        from_input = ops.matmul(inputs, self.kernel)
        from_state = ops.matmul(h_prev, self.recurrent_kernel)
        if self.layer_norm:
            from_input = self.input_norm(from_input)
            from_state = self.recurrent_norm(from_state)
        return self._by_gate(from_input + self.bias), self._by_gate(from_state)

    def _by_gate(self, stacked: Any) -> dict[str, Any]:
        return dict(zip(self.gates, ops.split(stacked, len(self.gates), axis=-1), strict=True))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "layer_norm": self.layer_norm}


@keras.saving.register_keras_serializable(package="chatbot")
class VanillaRNNCell(_ProjectedCell):
    """h_t = act(x W + b + h_{t-1} U); without layer norm it equals `keras.layers.SimpleRNNCell`."""

    def __init__(
        self, units: int, *, activation: str = "tanh", layer_norm: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(units, ("candidate",), layer_norm=layer_norm, **kwargs)
        self.activation = activation
        self._activation = keras.activations.get(activation)

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        from_input, from_state = self._project(inputs, states[0])
        h = self._activation(from_input["candidate"] + from_state["candidate"])
        return h, [h]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="chatbot")
class ResetAfterGRUCell(_ProjectedCell):
    """Keras' GRU formulation (reset_after, gates z, r, h): the reset gate scales the recurrent
    projection, bias included, so one matmul serves all gates. Without layer norm it equals
    `keras.layers.GRUCell`; `bias` and `recurrent_bias` are its two bias rows."""

    def __init__(self, units: int, *, layer_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(units, ("update", "reset", "candidate"), layer_norm=layer_norm, **kwargs)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        self.recurrent_bias = self.add_weight(
            shape=(3 * self.units,), initializer="zeros", name="recurrent_bias"
        )

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        h_prev = states[0]
        wx, uh = self._project(inputs, h_prev)
        b = self._by_gate(self.recurrent_bias)
        z = ops.sigmoid(wx["update"] + uh["update"] + b["update"])
        r = ops.sigmoid(wx["reset"] + uh["reset"] + b["reset"])
        candidate = ops.tanh(wx["candidate"] + r * (uh["candidate"] + b["candidate"]))
        h = z * h_prev + (1.0 - z) * candidate
        return h, [h]


@keras.saving.register_keras_serializable(package="chatbot")
class LSTMFamilyCell(_ProjectedCell):
    """The LSTM and its variants, gates in Keras' order (i, f, c, o).

    peephole: the input and forget gates also see c_{t-1}, the output gate sees c_t, each through
    a diagonal weight vector (Gers & Schmidhuber 2000). coupled: no input gate; i_t = 1 - f_t.
    layer_norm: besides the projections, c_t is normalized before the output tanh (the carried
    state stays unnormalized). Plain, without layer norm, it equals `keras.layers.LSTMCell`.
    """

    def __init__(
        self,
        units: int,
        *,
        peephole: bool = False,
        coupled: bool = False,
        layer_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        gates = ("forget", "cell", "output") if coupled else ("input", "forget", "cell", "output")
        super().__init__(units, gates, layer_norm=layer_norm, **kwargs)
        self.peephole = peephole
        self.coupled = coupled
        self.state_size = [units, units]
        if layer_norm:
            self.cell_norm = keras.layers.LayerNormalization(name="cell_norm")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        peeping = [gate for gate in self.gates if gate != "cell"] if self.peephole else []
        self.peepholes = {
            gate: self.add_weight(
                shape=(self.units,), initializer="glorot_uniform", name=f"{gate}_peephole"
            )
            for gate in peeping
        }
        if self.layer_norm:
            self.cell_norm.build((None, self.units))

    def _gate(self, gate: str, pre: dict[str, Any], c: Any) -> Any:
        """sigmoid of a gate's pre-activation, plus its peephole term on the cell state c."""
        if self.peephole:
            return ops.sigmoid(pre[gate] + self.peepholes[gate] * c)
        return ops.sigmoid(pre[gate])

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        h_prev, c_prev = states
        from_input, from_state = self._project(inputs, h_prev)
        pre = {gate: from_input[gate] + from_state[gate] for gate in self.gates}
        f = self._gate("forget", pre, c_prev)
        i = 1.0 - f if self.coupled else self._gate("input", pre, c_prev)
        c = f * c_prev + i * ops.tanh(pre["cell"])
        o = self._gate("output", pre, c)
        h = o * ops.tanh(self.cell_norm(c) if self.layer_norm else c)
        return h, [h, c]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "peephole": self.peephole, "coupled": self.coupled}


def make_cell(
    cell_type: str,
    units: int,
    *,
    activation: str = "tanh",
    layer_norm: bool = False,
    name: str | None = None,
) -> keras.layers.Layer:
    """One step cell: `h, new_states = cell(x_t, states)`, states listed as `state_names`."""
    _check(cell_type, activation)
    if cell_type == "rnn":
        if layer_norm:
            return VanillaRNNCell(units, activation=activation, layer_norm=True, name=name)
        return keras.layers.SimpleRNNCell(units, activation=activation, name=name)
    if cell_type == "gru":
        if layer_norm:
            return ResetAfterGRUCell(units, layer_norm=True, name=name)
        return keras.layers.GRUCell(units, name=name)
    if cell_type == "lstm" and not layer_norm:
        return keras.layers.LSTMCell(units, name=name)
    return LSTMFamilyCell(units, **_LSTM_VARIANTS[cell_type], layer_norm=layer_norm, name=name)


def make_rnn(
    cell_type: str,
    units: int,
    *,
    activation: str = "tanh",
    layer_norm: bool = False,
    return_sequences: bool = True,
    return_state: bool = True,
    go_backwards: bool = False,
    name: str | None = None,
) -> keras.layers.RNN:
    """A sequence layer over `make_cell`'s cell: Keras' fused SimpleRNN/GRU/LSTM when one fits
    (cuDNN on GPU), else `keras.layers.RNN`. Masked steps carry the state through."""
    _check(cell_type, activation)
    options = {
        "return_sequences": return_sequences,
        "return_state": return_state,
        "go_backwards": go_backwards,
        "name": name,
    }
    if cell_type in _STOCK_LAYERS and not layer_norm:
        extra = {"activation": activation} if cell_type == "rnn" else {}
        return _STOCK_LAYERS[cell_type](units, **extra, **options)
    cell = make_cell(cell_type, units, activation=activation, layer_norm=layer_norm)
    return keras.layers.RNN(cell, **options)
