"""Attention over the encoder outputs, Luong / TF-NMT style: the query is the decoder's top-layer
output h_t, and the layer returns the context vector c_t and the alignment weights a_t.

Score functions (``kind``):

- ``"bahdanau"``: v^T tanh(W_q h_t + W_k m_s), additive, with ``units`` hidden size.
- ``"luong_dot"``: h_t . m_s; needs the query and memory sizes to match.
- ``"luong_general"``: h_t^T W_a m_s.
- ``"luong_concat"``: v^T tanh(W_a [h_t; m_s]) = v^T tanh(W_1 h_t + W_2 m_s), ``units`` hidden size.

With ``scale``, dot and general scores are divided by sqrt(d), d the query size, as Vaswani et
al. (2017) scale dot products: a sum of d products grows like sqrt(d), and at initialization
unscaled scores of a few hundred units are already so far apart that the softmax picks one
position and passes almost no gradient to the others.

As score functions ``"bahdanau"`` and ``"luong_concat"`` are the same (W_a's two column blocks
are W_q and W_k); they differ in the query the decoder passes (``chatbot.model.seq2seq``): the
previous decoder state for Bahdanau, whose context then feeds the recurrent step, and the new
state for Luong.

What does not depend on the decoder step (the projected memory, called keys) is computed once per
source by :meth:`Attention.precompute` and handed to every step.
"""

from __future__ import annotations

from typing import Any, get_args

import keras
from keras import ops

from chatbot.config import AttentionType
from chatbot.errors import ConfigError

ATTENTION_TYPES: tuple[AttentionType, ...] = get_args(AttentionType)

_SCORES = ATTENTION_TYPES[1:]

_ADDITIVE = ("bahdanau", "luong_concat")

# Added to the scores of padded positions before the softmax; their weights are then set to exactly
# zero, so the value only has to keep exp() of real positions from being swamped.
_MASK_FILL = -1e9


def make_attention(
    kind: str, units: int, name: str | None = None, scale: bool = False
) -> Attention | None:
    """The attention layer for a config's ``kind``, or None for ``"none"`` (a plain decoder)."""
    if kind not in ATTENTION_TYPES:
        raise _unknown_kind(kind, ATTENTION_TYPES)
    if kind == "none":
        return None
    return Attention(kind=kind, units=units, scale=scale, name=name)


def _unknown_kind(kind: str, allowed: tuple[str, ...]) -> ConfigError:
    """The error for a kind outside ``allowed``, naming the bad value and the good ones."""
    return ConfigError(f"attention type {kind!r} is unknown; expected one of {', '.join(allowed)}")


@keras.saving.register_keras_serializable(package="chatbot")
class Attention(keras.layers.Layer):
    """Scores a decoder query against the encoder memory, and returns (context, weights).

    ``units`` is the hidden size of the additive scores; dot and general scores ignore it.
    """

    def __init__(self, kind: str, units: int, scale: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A timestep mask on the query passes through; the memory mask is an explicit argument.
        self.supports_masking = True
        if kind not in _SCORES:
            raise _unknown_kind(kind, _SCORES)
        if kind in _ADDITIVE and units < 1:
            raise ConfigError(f"attention units must be at least 1, got {units!r}")
        if scale and kind in _ADDITIVE:
            raise ConfigError(f"attention scaling applies to dot and general scores, not {kind!r}")
        self.kind = kind
        self.units = units
        self.scale = scale
        self.query_kernel = None
        self.memory_kernel = None
        self.score_vector = None

    def build(self, query_shape: tuple, memory_shape: tuple) -> None:
        """Creates the weights from the last axis of the query ([B, (T,) Dq]) and of the memory."""
        query_dim, memory_dim = query_shape[-1], memory_shape[-1]
        if self.kind == "luong_dot" and query_dim != memory_dim:
            raise ConfigError(
                f"luong_dot attention needs the decoder output size ({query_dim}) to equal "
                f"the encoder output size ({memory_dim}); use luong_general or another kind"
            )
        if self.kind == "luong_general":
            # W_a^T, stored as [Dm, Dq] so that keys = memory @ kernel and score = h_t . keys_s.
            self.memory_kernel = self.add_weight(
                shape=(memory_dim, query_dim), initializer="glorot_uniform", name="memory_kernel"
            )
        elif self.kind in _ADDITIVE:
            self.query_kernel = self.add_weight(
                shape=(query_dim, self.units), initializer="glorot_uniform", name="query_kernel"
            )
            self.memory_kernel = self.add_weight(
                shape=(memory_dim, self.units), initializer="glorot_uniform", name="memory_kernel"
            )
            self.score_vector = self.add_weight(
                shape=(self.units,), initializer="glorot_uniform", name="score_vector"
            )

    def precompute(self, memory: Any) -> Any:
        """The step-independent keys: [B, S, units] (additive), [B, S, Dq] (general), or memory.

        The weights must exist first: call the layer once or ``build(query_shape, memory_shape)``.
        """
        if not self.built:
            raise ValueError(
                f"attention layer {self.name!r} is not built; build it before precompute()"
            )
        memory = ops.cast(memory, self.compute_dtype)
        if self.kind == "luong_dot":
            return memory
        return ops.matmul(memory, ops.cast(self.memory_kernel, self.compute_dtype))

    def call(
        self, query: Any, memory: Any, keys: Any = None, memory_mask: Any = None
    ) -> tuple[Any, Any]:
        """Context [B, (T,) Dm] and weights [B, (T,) S] for a query of one step or of T steps.

        ``keys`` defaults to ``precompute(memory)``; pass it to avoid recomputing it every step.
        ``memory_mask`` is bool [B, S], True at real tokens; padded positions get weight 0.0.
        """
        single_step = len(query.shape) == 2
        if single_step:
            query = ops.expand_dims(query, 1)
        if keys is None:
            keys = self.precompute(memory)
        weights = self._normalize(self._scores(query, keys), memory_mask)
        context = ops.matmul(weights, memory)
        if single_step:
            return ops.squeeze(context, 1), ops.squeeze(weights, 1)
        return context, weights

    def _scores(self, query: Any, keys: Any) -> Any:
        """Scores [B, T, S] of queries [B, T, Dq] against keys [B, S, K]."""
        if self.kind in _ADDITIVE:
            projected = ops.matmul(query, ops.cast(self.query_kernel, self.compute_dtype))
            hidden = ops.tanh(ops.expand_dims(projected, 2) + ops.expand_dims(keys, 1))
            return ops.sum(hidden * ops.cast(self.score_vector, self.compute_dtype), axis=-1)
        scores = ops.matmul(query, ops.transpose(keys, (0, 2, 1)))
        if self.scale:
            scores = scores * ops.cast(1.0 / query.shape[-1] ** 0.5, scores.dtype)
        return scores

    def _normalize(self, scores: Any, memory_mask: Any) -> Any:
        """Softmax over source positions in float32, with padded positions at exactly zero.

        A fully padded row yields zero weights rather than NaN.
        """
        scores = ops.cast(scores, "float32")
        if memory_mask is None:
            return ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        mask = ops.expand_dims(ops.cast(memory_mask, "bool"), 1)
        weights = ops.softmax(ops.where(mask, scores, _MASK_FILL), axis=-1)
        return ops.cast(ops.where(mask, weights, 0.0), self.compute_dtype)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, for Keras-native saving."""
        return {
            **super().get_config(),
            "kind": self.kind,
            "units": self.units,
            "scale": self.scale,
        }
