"""The decoding loop as a TensorFlow Lite program, for a fixed number of sources of any length.

At small batches a decoder step is bound by matrix-vector products, which TensorFlow's kernels
run slowly; TensorFlow Lite's (XNNPACK) run the very same loop, `chatbot.decoding.search.decode`,
faster (`bench/decoding_speed.py`). The program holds the model's weights as constants and
takes the source ids and the `Knobs` as inputs, so one program serves every setting of the
numbers for its search spec and batch size; the source length is left open, and the
interpreter resizes its tensors when a source of another length comes (cheap, and no slower to
run than a program made for that length). It is made of Lite
builtin ops only (sampling draws its noise from `chatbot.decoding.noise` for this reason), so
the interpreter inside TensorFlow runs it without TensorFlow's own kernels. Attention weights
and per-token log-probabilities are not returned (`Generator` decodes those in TensorFlow).

`tf.lite.Interpreter` is deprecated in favour of the separate LiteRT package; the project pins
TensorFlow 2.21, which still ships it, so no second runtime has to be installed.
"""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import tensorflow as tf

from chatbot.decoding.search import KNOB_SPECS, Decoded, Knobs, SearchSpec, decode
from chatbot.model.seq2seq import Seq2Seq


def convert(
    model: Seq2Seq,
    spec: SearchSpec,
    rows: int,
    canonical: np.ndarray | None,
    nidf: np.ndarray | None = None,
    *,
    quantize: bool = False,
) -> bytes:
    """The flatbuffer of `decode` for `rows` sources of any length. Outputs: int32
    [rows, N, 2 + L] (reply length, finish reason, then the tokens) and float32 [rows, N, 2]
    (log-probability, score); packed by dtype because the converter renames outputs and merges
    equal ones.

    `quantize` stores the weight matrices as int8 (dynamic-range quantization: activations
    stay float32), a quarter of the memory a step streams; replies then differ a little from
    the float32 model's (`bench/runtime_agreement.py`)."""
    if spec.return_attention or spec.logprobs is not None:
        raise ValueError(
            "a TensorFlow Lite decoding program returns neither attention weights nor "
            "per-token log-probabilities"
        )

    @tf.function(input_signature=[tf.TensorSpec([rows, None], tf.int32), *KNOB_SPECS])
    def run(source: tf.Tensor, *knobs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        decoded = decode(model, source, spec, Knobs(*knobs), canonical, nidf)
        return (
            tf.concat(
                [decoded.lengths[..., None], decoded.finish_reasons[..., None], decoded.tokens],
                axis=-1,
            ),
            tf.stack([decoded.log_probs, decoded.scores], axis=-1),
        )

    converter = tf.lite.TFLiteConverter.from_concrete_functions([run.get_concrete_function()], run)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


class LiteLoop:
    """One converted decoding program and its interpreter; calls are serialized, since an
    interpreter is not safe to share between threads."""

    def __init__(self, program: bytes, threads: int | None = None) -> None:
        with warnings.catch_warnings():  # the deprecation notice, see the module docstring
            warnings.simplefilter("ignore")
            self._interpreter = tf.lite.Interpreter(
                model_content=program, num_threads=threads or os.cpu_count() or 1
            )
        self._interpreter.allocate_tensors()
        self._lock = threading.Lock()
        inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
        self._source = inputs["source"]["index"]
        self._source_shape = tuple(inputs["source"]["shape"])
        self._knobs = [inputs[f"knobs_{i}"] for i in range(len(Knobs._fields))]
        outputs = {d["dtype"]: d["index"] for d in self._interpreter.get_output_details()}
        self._ints, self._floats = outputs[np.int32], outputs[np.float32]

    def __call__(self, source_ids: np.ndarray, knobs: Knobs) -> Decoded:
        source_ids = np.asarray(source_ids, np.int32)
        with self._lock:
            interpreter = self._interpreter
            if self._source_shape != source_ids.shape:
                interpreter.resize_tensor_input(self._source, source_ids.shape)
                interpreter.allocate_tensors()
                self._source_shape = source_ids.shape
            interpreter.set_tensor(self._source, source_ids)
            for detail, value in zip(self._knobs, knobs, strict=True):
                interpreter.set_tensor(detail["index"], np.asarray(value, detail["dtype"]))
            interpreter.invoke()
            ints = interpreter.get_tensor(self._ints)
            floats = interpreter.get_tensor(self._floats)
        return Decoded(
            tokens=ints[..., 2:],
            log_probs=floats[..., 0],
            scores=floats[..., 1],
            lengths=ints[..., 0],
            finish_reasons=ints[..., 1],
            attention=None,
        )
