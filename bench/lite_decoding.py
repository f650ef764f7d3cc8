"""Would the decoding loop meet the speed targets as a TensorFlow Lite program? Prints JSON.

    python bench/lite_decoding.py [--config configs/reference.yaml] [--repeats 20]

At batch 1 a decoder step is bound by streaming its weight matrices from memory, and
TensorFlow's matrix-vector products do that slowly (README, "Speed"). This converts the very
loop `chatbot bench` times (`chatbot.decoding.search.decode`, greedy and beam 5, 10 decoder
steps from a 10-token source, random weights) into TensorFlow Lite programs, once with float32
weights and once with int8 weights (dynamic-range quantization: activations stay float), and
times them in the Lite interpreter (XNNPACK) against the same loop in TensorFlow, as `chatbot
bench` runs it. It also reports whether each program chose the same tokens as TensorFlow.

This measures a candidate runtime; the `Chatbot` facade does not use it (yet).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from chatbot.benchmark import build_for_benchmark, fixed_length_knobs, median_ms, random_batch
from chatbot.config import load_config
from chatbot.decoding.generator import Generator
from chatbot.decoding.search import SearchSpec, decode

STEPS = 10
SOURCE_LEN = 10


def lite_program(model: Any, spec: SearchSpec, knobs: Any, quantize: bool) -> bytes:
    """`decode` for one source of SOURCE_LEN tokens as a TensorFlow Lite flatbuffer of builtin
    ops only, which the standalone LiteRT runtime could run too (with an open batch dimension
    the loop would need TensorFlow's tensor-list ops inside the program)."""

    @tf.function(input_signature=[tf.TensorSpec([1, SOURCE_LEN], tf.int32)])
    def tokens(source: tf.Tensor) -> tf.Tensor:
        return decode(model, source, spec, knobs, None).tokens

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [tokens.get_concrete_function()], tokens
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def lite_runner(program: bytes, threads: int, source: np.ndarray) -> Callable[[], np.ndarray]:
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=program, num_threads=threads)
    interpreter.allocate_tensors()
    source_index = interpreter.get_input_details()[0]["index"]
    tokens_index = interpreter.get_output_details()[0]["index"]

    def run() -> np.ndarray:
        interpreter.set_tensor(source_index, source)
        interpreter.invoke()
        return interpreter.get_tensor(tokens_index)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/reference.yaml")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    model = build_for_benchmark(load_config(args.config))
    knobs = fixed_length_knobs(STEPS)
    source = np.asarray(random_batch(model.vocab_size, 1, SOURCE_LEN, 2)[0]["source_ids"])
    generator = Generator(model, jit_compile="auto")
    result: dict[str, Any] = {"config": args.config, "threads": args.threads}
    for name, spec in (("greedy", SearchSpec("greedy")), ("beam5", SearchSpec("beam", 5))):
        expected = generator.generate(source, spec, knobs).tokens
        result[f"tf_{name}_ms_b1"] = round(
            median_ms(lambda s=spec: generator.generate(source, s, knobs), args.repeats, 3), 2
        )
        for weights, quantize in (("float32", False), ("int8", True)):
            started = time.perf_counter()
            program = lite_program(model, spec, knobs, quantize)
            run = lite_runner(program, args.threads, source.astype(np.int32))
            key = f"lite_{weights}_{name}"
            result[f"{key}_ms_b1"] = round(median_ms(run, args.repeats, 3), 2)
            result[f"{key}_same_tokens"] = bool(np.array_equal(run(), expected))
            result[f"{key}_mb"] = round(len(program) / 1e6, 1)
            result[f"{key}_convert_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
