"""A model's compiled decoding loops (one per `SearchSpec`) and its teacher-forced scorer."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from chatbot.config import RUNTIMES, Runtime
from chatbot.decoding.lite import LiteLoop, convert
from chatbot.decoding.search import KNOB_SPECS, Decoded, Knobs, SearchSpec, decode
from chatbot.errors import ConfigError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID

_IDS = tf.TensorSpec([None, None], tf.int32)
# The most logits `Generator.score` computes at once: 2**26 float32 values, 256 MiB.
SCORE_CHUNK_LOGITS = 2**26
# `Generator.score` groups rows whose targets have as many tokens, in steps of this many.
SCORE_LENGTH_STEP = 8


# Knobs a caller may leave out: their neutral values.
_NEUTRAL_KNOBS = {"presence_penalty": 0.0, "frequency_penalty": 0.0, "specificity": 0.0}


def make_knobs(**values: Any) -> Knobs:
    """Knobs as tensors of the compiled signature's dtypes (penalties 0 unless given)."""
    values = {**_NEUTRAL_KNOBS, **values}
    return Knobs(
        **{
            name: tf.constant(values[name], spec.dtype)
            for name, spec in KNOB_SPECS._asdict().items()
        }
    )


# XLA fuses a decoder step's many small ops, which dominates when few rows are decoded; with
# many rows, graph mode's multi-threaded matmuls can win (`bench/decoding_speed.py` measures
# where). "auto" uses XLA up to `xla_max_rows` hypotheses. XLA compiles once per input shape
# (seconds each), so rows are padded up to a power of two and source lengths up to a multiple
# of XLA_LENGTH_STEP: a server's micro-batches, which come in every size, then share a handful
# of programs. The "lite" runtime runs a single source (with any number of hypotheses,
# unpadded) as a TensorFlow Lite program (`chatbot.decoding.lite`), converted once per search
# spec: for one source it is the fastest runtime, while for several XLA is as fast or faster
# (`bench/decoding_speed.py`), so batches keep the TensorFlow path.
XLA_MAX_ROWS = 8
XLA_LENGTH_STEP = 16
# A Lite program holds its own copy of the weights, and every search spec (strategy, width,
# blocking, banned phrases) needs its own: the least recently used are dropped beyond this many,
# so requests with ever new banned phrases cannot grow a server's memory without bound.
LITE_MAX_PROGRAMS = 8
JitPolicy = bool | Literal["auto"]


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class Generator:
    """Runs `decode` for numpy batches, compiling each search spec once. `jit_compile`: True
    always uses XLA, False never, "auto" for batches of at most `xla_max_rows` hypotheses
    (rows padded up to a power of two) and graph mode above; XLA suits a long-lived process,
    since each new input shape costs a compilation. `runtime="lite"` (or "lite-int8") decodes a
    single source with TensorFlow Lite instead, unless attention weights are asked for."""

    def __init__(
        self,
        model: Seq2Seq,
        *,
        jit_compile: JitPolicy = False,
        xla_max_rows: int = XLA_MAX_ROWS,
        canonical_ids: np.ndarray | None = None,
        nidf: np.ndarray | None = None,
        runtime: Runtime = "tf",
    ) -> None:
        if runtime not in RUNTIMES:
            raise ConfigError(
                f"runtime {runtime!r} is unknown; expected one of {', '.join(RUNTIMES)}"
            )
        self.model = model
        self.canonical = None if canonical_ids is None else np.asarray(canonical_ids, np.int32)
        self.nidf = None if nidf is None else np.asarray(nidf, np.float32)
        self.jit_compile = jit_compile
        self.xla_max_rows = xla_max_rows
        self.runtime = runtime
        self._loops: dict[tuple[SearchSpec, bool], Any] = {}
        self._lite_loops: OrderedDict[SearchSpec, LiteLoop] = OrderedDict()
        self._scorer = tf.function(
            self.log_prob_graph,
            input_signature=[_IDS, _IDS, tf.TensorSpec([], tf.float32)],
            reduce_retracing=True,
        )

    def _loop(self, spec: SearchSpec, xla: bool) -> Any:
        if (spec, xla) not in self._loops:
            self._loops[spec, xla] = tf.function(
                lambda source, knobs: decode(
                    self.model, source, spec, knobs, self.canonical, self.nidf
                ),
                input_signature=[_IDS, KNOB_SPECS],
                jit_compile=xla,
            )
        return self._loops[spec, xla]

    def _lite_loop(self, spec: SearchSpec) -> LiteLoop:
        if spec in self._lite_loops:
            self._lite_loops.move_to_end(spec)
            return self._lite_loops[spec]
        quantize = self.runtime == "lite-int8"
        program = convert(self.model, spec, 1, self.canonical, self.nidf, quantize=quantize)
        loop = LiteLoop(program)
        self._lite_loops[spec] = loop
        if len(self._lite_loops) > LITE_MAX_PROGRAMS:
            self._lite_loops.popitem(last=False)
        return loop

    def uses_lite(self, inputs: int, spec: SearchSpec) -> bool:
        """Lite decodes one source, without attention weights or per-token log-probabilities
        (its program returns replies and scores only)."""
        lite_outputs = not spec.return_attention and spec.logprobs is None
        return self.runtime != "tf" and inputs == 1 and lite_outputs

    def uses_xla(self, inputs: int, width: int) -> bool:
        if self.jit_compile == "auto":
            return _next_power_of_two(inputs) * width <= self.xla_max_rows
        return bool(self.jit_compile)

    def compile_shapes(self, spec: SearchSpec, knobs: Knobs, max_rows: int, max_length: int) -> int:
        """Compile, ahead of traffic, every program (XLA, or Lite for one input) `generate` may
        need for up to `max_rows` inputs of up to `max_length` source tokens; returns how many
        shapes were run."""
        shapes = [
            (rows, length)
            for rows in (1 << i for i in range(_next_power_of_two(max_rows).bit_length()))
            for length in range(XLA_LENGTH_STEP, max_length + XLA_LENGTH_STEP, XLA_LENGTH_STEP)
            if self.uses_xla(rows, spec.width) and not self.uses_lite(rows, spec)
        ]
        if self.uses_lite(1, spec):  # one program for every source length
            shapes.insert(0, (1, XLA_LENGTH_STEP))
        for rows, length in shapes:
            source = np.full((rows, length), PAD_ID, np.int32)
            source[:, 0] = EOS_ID
            self.generate(source, spec, knobs)
        return len(shapes)

    def generate(self, source_ids: np.ndarray, spec: SearchSpec, knobs: Knobs) -> Decoded:
        rows, length = source_ids.shape
        if self.uses_lite(rows, spec):
            return self._lite_loop(spec)(source_ids, knobs)
        xla = self.uses_xla(rows, spec.width)
        if xla:
            extra_rows = _next_power_of_two(rows) - rows
            extra = -length % XLA_LENGTH_STEP
            source_ids = np.pad(source_ids, ((0, extra_rows), (0, extra)), constant_values=PAD_ID)
            source_ids[rows:, 0] = EOS_ID  # padding rows: an empty context
        decoded = self._loop(spec, xla)(tf.constant(source_ids, tf.int32), knobs)
        return Decoded(*(None if v is None else v.numpy()[:rows] for v in decoded))

    def log_prob_graph(
        self, source_ids: tf.Tensor, target_ids: tf.Tensor, specificity: Any = None
    ) -> tf.Tensor:
        """`score` as graph ops, for callers already inside a `tf.function` (the exporter)."""
        decoder_input = tf.concat(
            [tf.fill([tf.shape(target_ids)[0], 1], BOS_ID), target_ids[:, :-1]], axis=1
        )
        logits = self.model({"source_ids": source_ids, "decoder_input_ids": decoder_input})
        logits = tf.cast(logits, tf.float32)
        if specificity is not None and self.nidf is not None:
            logits = logits + specificity * tf.constant(self.nidf)[None, None, :]
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        picked = tf.gather(log_probs, target_ids, axis=2, batch_dims=2)
        return tf.reduce_sum(tf.where(target_ids != PAD_ID, picked, 0.0), axis=1)

    def score(
        self, source_ids: np.ndarray, target_ids: np.ndarray, specificity: float = 0.0
    ) -> np.ndarray:
        """Teacher-forced log p(target | source) per row; sources and targets padded with PAD
        at the end, targets ending with EOS. With `specificity`, each step's logits first get
        specificity times each token's NIDF, as the decoding loop weights them.

        The output layer's logits dominate the cost, and reranking scores hundreds of rows of
        mixed lengths: rows are scored in groups of similar target length
        (SCORE_LENGTH_STEP), each cut to its own longest row, and no group holds more than
        SCORE_CHUNK_LOGITS logits at once."""
        if specificity and self.nidf is None:
            raise ValueError("specificity weighting needs the NIDF of every token")
        target_lengths = (target_ids != PAD_ID).sum(axis=1)
        source_lengths = (source_ids != PAD_ID).sum(axis=1)
        order = np.argsort(target_lengths, kind="stable")
        scores = np.zeros(len(target_ids), np.float32)
        for group in _length_groups(target_lengths[order], int(self.model.vocab_size)):
            rows = order[group]
            width, source_width = target_lengths[rows].max(), source_lengths[rows].max()
            scores[rows] = self._scorer(
                tf.constant(source_ids[rows, : max(1, source_width)], tf.int32),
                tf.constant(target_ids[rows, : max(1, width)], tf.int32),
                tf.constant(specificity, tf.float32),
            ).numpy()
        return scores


def _length_groups(lengths: np.ndarray, vocab_size: int) -> list[slice]:
    """Runs of `lengths` (sorted) in the same SCORE_LENGTH_STEP bucket, each cut so that its
    rows times its longest length times `vocab_size` stays within SCORE_CHUNK_LOGITS."""
    groups, start = [], 0
    while start < len(lengths):
        bucket = -(-int(lengths[start]) // SCORE_LENGTH_STEP)
        end = start + 1
        while (
            end < len(lengths)
            and -(-int(lengths[end]) // SCORE_LENGTH_STEP) == bucket
            and (end - start + 1) * int(lengths[end]) * vocab_size <= SCORE_CHUNK_LOGITS
        ):
            end += 1
        groups.append(slice(start, end))
        start = end
    return groups
