"""What single ops over [rows, vocabulary] cost in TensorFlow Lite, as JSON: the measurements
behind the decoding loop's choice of float masks over boolean ones and selects.

    python bench/lite_ops.py [--rows 5] [--vocab 7800]

Each op runs 50 times inside a `tf.while_loop` of a converted Lite program (2 threads, as the
decoding runtime runs), on a [rows, vocab] float input whose values change every iteration;
the figure is the median time per iteration minus that of a loop that does nothing else, in
microseconds. The `ban` row is a bool [1, vocab] mask, `cap` the float row made from it
(0, or -1e9 where banned), `finished` a bool [rows] mask; `output_layer` multiplies the rows'
first 500 values by a constant [500, vocab] matrix, as the reference model's last layer does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from chatbot.decoding.kernels import NEG_INF

ITERATIONS = 50

UNITS = 500  # the reference model's hidden size


def _weights(vocab: int) -> tf.Tensor:
    """A [UNITS, vocab] matrix the converter folds into a constant, as a model's output layer."""
    return tf.reshape(tf.sin(tf.range(UNITS * vocab, dtype=tf.float32)), [UNITS, vocab])


OPS = {
    "nothing": lambda x, ban, cap, finished: x,
    "output_layer": lambda x, ban, cap, finished: tf.matmul(x[:, :UNITS], _weights(x.shape[1])),
    "add_row_broadcast": lambda x, ban, cap, finished: x + cap,
    "minimum_row_broadcast": lambda x, ban, cap, finished: tf.minimum(x, cap),
    "select_row_broadcast": lambda x, ban, cap, finished: tf.where(ban, NEG_INF, x),
    "select_per_row": lambda x, ban, cap, finished: tf.where(finished[:, None], 0.0, x),
    "compare_scalar": lambda x, ban, cap, finished: tf.cast(x > 1.0, tf.float32),
    "logical_or_broadcast": lambda x, ban, cap, finished: tf.cast((x > 0.0) | ban, tf.float32),
    "gather_columns": lambda x, ban, cap, finished: tf.gather(
        x, tf.range(x.shape[1])[::-1], axis=1
    ),
    "ceil_clip": lambda x, ban, cap, finished: tf.math.ceil(tf.clip_by_value(x, 0.0, 1.0)),
    "log_softmax": lambda x, ban, cap, finished: tf.nn.log_softmax(x, axis=-1),
    "reduce_max": lambda x, ban, cap, finished: x + tf.reduce_max(x, axis=-1, keepdims=True),
    "argmax": lambda x, ban, cap, finished: x + tf.cast(tf.argmax(x, -1), tf.float32)[:, None],
    "top_k_5_per_row": lambda x, ban, cap, finished: x + tf.math.top_k(x, 5).values[:, :1],
    "top_k_64": lambda x, ban, cap, finished: x + tf.math.top_k(x, 64).values[:, -1:],
    "top_k_1024": lambda x, ban, cap, finished: x + tf.math.top_k(x, 1024).values[:, -1:],
    "sort_all": lambda x, ban, cap, finished: x + tf.sort(x, direction="DESCENDING")[:, -1:],
}


def program(op, rows: int, vocab: int) -> tf.lite.Interpreter:
    def loop(x: tf.Tensor, ban: tf.Tensor, finished: tf.Tensor) -> tf.Tensor:
        cap = tf.where(ban, NEG_INF, 0.0)  # once, outside the loop

        def body(i: tf.Tensor, x: tf.Tensor, total: tf.Tensor):
            return i + 1, x * 0.999 + 0.001, total + op(x, ban, cap, finished)[:, :1]

        start = (tf.constant(0), x, tf.zeros([rows, 1]))
        return tf.while_loop(lambda i, *_: i < ITERATIONS, body, start)[-1]

    signature = [
        tf.TensorSpec([rows, vocab]),
        tf.TensorSpec([1, vocab], tf.bool),
        tf.TensorSpec([rows], tf.bool),
    ]
    function = tf.function(loop, input_signature=signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=converter.convert(), num_threads=2)
    interpreter.allocate_tensors()
    return interpreter


def per_iteration_us(interpreter: tf.lite.Interpreter, feeds: list, repeats: int) -> float:
    for detail, value in zip(interpreter.get_input_details(), feeds, strict=True):
        interpreter.set_tensor(detail["index"], value)
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - started)
    return 1e6 * statistics.median(times) / ITERATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--vocab", type=int, default=7800)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    feeds = [
        rng.normal(size=(args.rows, args.vocab)).astype(np.float32),
        rng.random((1, args.vocab)) < 0.01,
        np.zeros(args.rows, bool),
    ]
    programs = {name: program(op, args.rows, args.vocab) for name, op in OPS.items()}
    times = {name: per_iteration_us(p, feeds, args.repeats) for name, p in programs.items()}
    baseline = times.pop("nothing")
    result = {"benchmark": "lite_ops", "rows": args.rows, "vocab": args.vocab}
    result["us"] = {name: round(value - baseline, 1) for name, value in times.items()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
