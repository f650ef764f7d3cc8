"""Speed measurements on random weights and random data, for `bench/` and `chatbot bench`.

Every figure is a median over repeated runs after warm-up steps (which include tracing and
compilation), so one slow step on a shared machine does not move it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from chatbot.config import Config, Runtime
from chatbot.decoding.generator import Generator, make_knobs
from chatbot.decoding.search import Knobs, SearchSpec
from chatbot.model.seq2seq import Seq2Seq
from chatbot.tokenizer import BOS_ID, EOS_ID
from chatbot.training.optimizer import FusedAdam


def median_ms(
    runs: dict[str, Callable[[], Any]], repeats: int, warmup: int, turn: int = 5
) -> dict[str, float]:
    """Median wall time of each run in milliseconds, after `warmup` untimed calls of each.

    The runs take turns of `turn` timed calls, so all of them see the same machine: a shared
    machine's speed drifts within a minute, and timing one run after the other would put that
    drift into the ratios between them. Each turn starts with an untimed call,
    since the run before may have pushed this run's weights out of the CPU caches (a decoder
    step at the reference dimensions reads tens of megabytes of them), while a server that
    keeps answering with one program finds them there."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    while any(len(values) < repeats for values in times.values()):
        for name, run in runs.items():
            run()
            for _ in range(min(turn, repeats - len(times[name]))):
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def random_batch(
    vocab_size: int, batch_size: int, source_len: int, target_len: int, seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """A full batch of random ids in the pipeline's format (no padding)."""
    rng = np.random.default_rng(seed)
    source = rng.integers(EOS_ID + 2, vocab_size, (batch_size, source_len), dtype=np.int32)
    target = rng.integers(EOS_ID + 2, vocab_size, (batch_size, target_len), dtype=np.int32)
    decoder_input = np.concatenate([np.full((batch_size, 1), BOS_ID, np.int32), target[:, :-1]], 1)
    inputs = {"source_ids": source, "decoder_input_ids": decoder_input}
    return inputs, target, np.ones(target.shape, np.float32)


def build_for_benchmark(config: Config, vocab_size: int | None = None) -> Seq2Seq:
    """A compiled model with random weights at the config's dimensions."""
    vocab = vocab_size or config.data.tokenizer.vocab_size
    keras.utils.set_random_seed(config.training.seed)
    model = Seq2Seq(config.model, vocab)
    model.build()
    training = config.training
    optimizer = FusedAdam(training.learning_rate, global_clipnorm=training.clip_norm)
    model.compile(optimizer=optimizer)
    model.configure_training(training)
    return model


def training_speed(
    config: Config, *, source_len: int = 10, target_len: int = 10, steps: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Median train step time and target tokens per second at the config's batch size."""
    model = build_for_benchmark(config)
    batch = random_batch(model.vocab_size, config.training.batch_size, source_len, target_len)
    step_ms = median_ms({"step": lambda: model.train_on_batch(*batch)}, steps, warmup)["step"]
    tokens = config.training.batch_size * target_len
    return {
        "train_step_ms": round(step_ms, 2),
        "train_tokens_per_s": round(tokens / step_ms * 1000, 1),
    }


def fixed_length_knobs(steps: int) -> Knobs:
    """Decoding settings under which every hypothesis runs exactly `steps` decoder steps, the
    last one the forced end of sequence, so timings do not depend on when replies end."""
    return make_knobs(
        max_length=steps - 1,
        min_length=steps - 1,
        length_penalty=0.6,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        repetition_penalty=1.0,
        seed=[0, 0],
    )


def decoding_speed(
    config: Config,
    *,
    source_len: int = 10,
    steps: int = 10,
    repeats: int = 20,
    warmup: int = 3,
    runtime: Runtime = "tf",
) -> dict[str, float]:
    """Median time to generate `steps` tokens (decoder steps, the last one the forced end of
    sequence, so none stops early) with greedy search at batch 1 and 32, and beam 5 at batch 1,
    with the server's choice of programs (XLA for small batches) and the given runtime; the
    three take turns (see `median_ms`)."""
    model = build_for_benchmark(config)
    generator = Generator(model, jit_compile="auto", runtime=runtime)
    knobs = fixed_length_knobs(steps)
    source = random_batch(model.vocab_size, 32, source_len, 2)[0]["source_ids"]
    cases = {
        "greedy_ms_b1": (SearchSpec("greedy"), source[:1]),
        "greedy_ms_b32": (SearchSpec("greedy"), source),
        "beam5_ms_b1": (SearchSpec("beam", 5), source[:1]),
    }
    runs = {
        name: lambda s=spec, x=ids: generator.generate(x, s, knobs)
        for name, (spec, ids) in cases.items()
    }
    return {name: round(ms, 2) for name, ms in median_ms(runs, repeats, warmup).items()}
