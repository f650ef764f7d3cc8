"""A model's compiled decoding loops (one per `SearchSpec`) and its teacher-forced scorer."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import tensorflow as tf

from chatbot.decoding.search import Decoded, Knobs, SearchSpec, decode
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID

_IDS = tf.TensorSpec([None, None], tf.int32)
_KNOBS = Knobs(
    max_length=tf.TensorSpec([], tf.int32),
    min_length=tf.TensorSpec([], tf.int32),
    length_penalty=tf.TensorSpec([], tf.float32),
    temperature=tf.TensorSpec([], tf.float32),
    top_k=tf.TensorSpec([], tf.int32),
    top_p=tf.TensorSpec([], tf.float32),
    repetition_penalty=tf.TensorSpec([], tf.float32),
    seed=tf.TensorSpec([2], tf.int32),
)


def make_knobs(**values: Any) -> Knobs:
    """Knobs as tensors of the compiled signature's dtypes."""
    return Knobs(
        **{name: tf.constant(values[name], spec.dtype) for name, spec in _KNOBS._asdict().items()}
    )


# XLA fuses a decoder step's many small ops, which dominates when few rows are decoded; with
# many rows, graph mode's multi-threaded matmuls can win (at the reference dimensions, 500 units,
# from 8 rows on; at the default model's, not even at 64). "auto" uses XLA up to `xla_max_rows`
# hypotheses. XLA compiles once per input shape (seconds each), so rows are padded up to a power
# of two and source lengths up to a multiple of XLA_LENGTH_STEP: a server's micro-batches, which
# come in every size, then share a handful of programs.
XLA_MAX_ROWS = 8
XLA_LENGTH_STEP = 16
JitPolicy = bool | Literal["auto"]


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class Generator:
    """Runs `decode` for numpy batches, compiling each search spec once. `jit_compile`: True
    always uses XLA, False never, "auto" for batches of at most `xla_max_rows` hypotheses
    (rows padded up to a power of two) and graph mode above; XLA suits a long-lived process,
    since each new input shape costs a compilation."""

    def __init__(
        self,
        model: Seq2Seq,
        *,
        jit_compile: JitPolicy = False,
        xla_max_rows: int = XLA_MAX_ROWS,
        canonical_ids: np.ndarray | None = None,
    ) -> None:
        self.model = model
        self.canonical = None if canonical_ids is None else tf.constant(canonical_ids, tf.int32)
        self.jit_compile = jit_compile
        self.xla_max_rows = xla_max_rows
        self._loops: dict[tuple[SearchSpec, bool], Any] = {}
        self._scorer = tf.function(
            self.log_prob_graph, input_signature=[_IDS, _IDS], reduce_retracing=True
        )

    def _loop(self, spec: SearchSpec, xla: bool) -> Any:
        if (spec, xla) not in self._loops:
            self._loops[spec, xla] = tf.function(
                lambda source, knobs: decode(self.model, source, spec, knobs, self.canonical),
                input_signature=[_IDS, _KNOBS],
                jit_compile=xla,
            )
        return self._loops[spec, xla]

    def uses_xla(self, inputs: int, width: int) -> bool:
        if self.jit_compile == "auto":
            return _next_power_of_two(inputs) * width <= self.xla_max_rows
        return bool(self.jit_compile)

    def compile_shapes(self, spec: SearchSpec, knobs: Knobs, max_rows: int, max_length: int) -> int:
        """Compile, ahead of traffic, every XLA program `generate` may need for up to `max_rows`
        inputs of up to `max_length` source tokens; returns how many shapes were run."""
        shapes = [
            (rows, length)
            for rows in (1 << i for i in range(_next_power_of_two(max_rows).bit_length()))
            for length in range(XLA_LENGTH_STEP, max_length + XLA_LENGTH_STEP, XLA_LENGTH_STEP)
            if self.uses_xla(rows, spec.width)
        ]
        for rows, length in shapes:
            source = np.full((rows, length), PAD_ID, np.int32)
            source[:, 0] = EOS_ID
            self.generate(source, spec, knobs)
        return len(shapes)

    def generate(self, source_ids: np.ndarray, spec: SearchSpec, knobs: Knobs) -> Decoded:
        rows, length = source_ids.shape
        xla = self.uses_xla(rows, spec.width)
        if xla:
            extra_rows = _next_power_of_two(rows) - rows
            extra = -length % XLA_LENGTH_STEP
            source_ids = np.pad(source_ids, ((0, extra_rows), (0, extra)), constant_values=PAD_ID)
            source_ids[rows:, 0] = EOS_ID  # padding rows: an empty context
        decoded = self._loop(spec, xla)(tf.constant(source_ids, tf.int32), knobs)
        return Decoded(*(None if v is None else v.numpy()[:rows] for v in decoded))

    def log_prob_graph(self, source_ids: tf.Tensor, target_ids: tf.Tensor) -> tf.Tensor:
        """`score` as graph ops, for callers already inside a `tf.function` (the exporter)."""
        decoder_input = tf.concat(
            [tf.fill([tf.shape(target_ids)[0], 1], BOS_ID), target_ids[:, :-1]], axis=1
        )
        logits = self.model({"source_ids": source_ids, "decoder_input_ids": decoder_input})
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        picked = tf.gather(log_probs, target_ids, axis=2, batch_dims=2)
        return tf.reduce_sum(tf.where(target_ids != PAD_ID, picked, 0.0), axis=1)

    def score(self, source_ids: np.ndarray, target_ids: np.ndarray) -> np.ndarray:
        """Teacher-forced log p(target | source) per row; targets end with EOS, PAD after."""
        return self._scorer(
            tf.constant(source_ids, tf.int32), tf.constant(target_ids, tf.int32)
        ).numpy()
