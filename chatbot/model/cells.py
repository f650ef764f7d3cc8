"""Recurrent cells by name: vanilla RNN, GRU and LSTM (equal to Keras' own), layer normalization
(Ba et al. 2016), peephole LSTMs (Gers & Schmidhuber 2000) and coupled input/forget gates.

Every sequence layer exposes `.cell`, the step function the decoder runs one token at a time,
sharing the layer's weights. On a GPU, plain rnn/gru/lstm use Keras' fused layers (cuDNN). On a
CPU every type runs as a `ProjectedRNN`: the input projection of all time steps is one large
matmul before the loop, and only the recurrent part runs step by step, which is markedly faster
than Keras' generic loop projecting one step at a time (`bench/train_speed.py` measures it)."""

from __future__ import annotations

from typing import Any, get_args

import keras
import tensorflow as tf
from keras import ops, tree

# The loop that keras.layers.RNN itself runs (Keras has no public alias for it), so that
# ProjectedRNN handles masks, go_backwards and outputs exactly as RNN does.
from keras.src.backend import rnn as keras_rnn_loop

from chatbot.config import Activation, CellType
from chatbot.errors import ConfigError

CELL_TYPES: tuple[CellType, ...] = get_args(CellType)
ACTIVATIONS: tuple[Activation, ...] = get_args(Activation)

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

    def project_inputs(self, inputs: Any) -> Any:
        """LN(x @ W) + b, gates stacked on the last axis; x is one step [B, D] or a whole
        sequence [B, T, D] (the projection does not depend on the state, so it can be hoisted)."""
        from_input = ops.matmul(inputs, self.kernel)
        if self.layer_norm:
            from_input = self.input_norm(from_input)
        return from_input + self.bias

    def _recurrent(self, h_prev: Any) -> dict[str, Any]:
        """Per-gate recurrent pre-activations LN(h @ U)."""
        from_state = ops.matmul(h_prev, self.recurrent_kernel)
        if self.layer_norm:
            from_state = self.recurrent_norm(from_state)
        return self._by_gate(from_state)

    def step(self, projected: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        """One step from the projected input (`project_inputs`) and the previous states."""
        raise NotImplementedError

    def call(self, inputs: Any, states: list[Any], training: bool = False) -> tuple[Any, list[Any]]:
        return self.step(self.project_inputs(inputs), states)

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

    def step(self, projected: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        h = self._activation(projected + self._recurrent(states[0])["candidate"])
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

    def step(self, projected: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        h_prev = states[0]
        wx, uh = self._by_gate(projected), self._recurrent(h_prev)
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

    def step(self, projected: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        h_prev, c_prev = states
        from_input, from_state = self._by_gate(projected), self._recurrent(h_prev)
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
) -> _ProjectedCell:
    """One step cell: `h, new_states = cell(x_t, states)`, states listed as `state_names`."""
    _check(cell_type, activation)
    if cell_type == "rnn":
        return VanillaRNNCell(units, activation=activation, layer_norm=layer_norm, name=name)
    if cell_type == "gru":
        return ResetAfterGRUCell(units, layer_norm=layer_norm, name=name)
    return LSTMFamilyCell(units, **_LSTM_VARIANTS[cell_type], layer_norm=layer_norm, name=name)


@keras.saving.register_keras_serializable(package="chatbot")
class ProjectedRNN(keras.layers.RNN):
    """`keras.layers.RNN` over one of this module's cells, with the input projection of every
    time step done up front as one matmul; the loop runs only the recurrent part."""

    def inner_loop(
        self, sequences: Any, initial_state: Any, mask: Any, training: bool = False
    ) -> Any:
        if not tree.is_nested(initial_state):
            initial_state = [initial_state]
        return keras_rnn_loop(
            self.cell.step,
            self.cell.project_inputs(sequences),
            initial_state,
            go_backwards=self.go_backwards,
            mask=mask,
            unroll=self.unroll,
            input_length=sequences.shape[1],
            zero_output_for_mask=self.zero_output_for_mask,
            return_all_outputs=self.return_sequences,
        )


def make_rnn(
    cell_type: str,
    units: int,
    *,
    activation: str = "tanh",
    layer_norm: bool = False,
    return_sequences: bool = True,
    return_state: bool = True,
    go_backwards: bool = False,
    fused: bool | None = None,
    name: str | None = None,
) -> keras.layers.RNN:
    """A sequence layer over `make_cell`'s cell. `fused` picks Keras' SimpleRNN/GRU/LSTM for
    plain rnn/gru/lstm (cuDNN on a GPU); by default it is on when a GPU is visible. Otherwise a
    `ProjectedRNN`. Masked steps carry the state through."""
    _check(cell_type, activation)
    options = {
        "return_sequences": return_sequences,
        "return_state": return_state,
        "go_backwards": go_backwards,
        "name": name,
    }
    if fused is None:
        fused = bool(tf.config.list_logical_devices("GPU"))
    if fused and cell_type in _STOCK_LAYERS and not layer_norm:
        extra = {"activation": activation} if cell_type == "rnn" else {}
        return _STOCK_LAYERS[cell_type](units, **extra, **options)
    cell = make_cell(cell_type, units, activation=activation, layer_norm=layer_norm)
    return ProjectedRNN(cell, **options)
