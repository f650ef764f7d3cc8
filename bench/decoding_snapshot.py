"""Every decoded output of a bundle under many settings and runtimes, to check that a change to
the decoding loop leaves replies exactly as they were.

    python bench/decoding_snapshot.py --data build/runs/dd3 --out build/after.npz \
        [--compare build/before.npz]

To snapshot an older version, run this script with that version's package first on the path,
for example from a `git worktree` of it: `PYTHONPATH=../old python bench/decoding_snapshot.py
... --out build/before.npz`.

For the first `--limit` validation contexts, one at a time (the Lite runtime's case) and as
one padded batch (TensorFlow's), it saves tokens, log-probabilities, scores and lengths for
greedy, beam search and sampling with the bundle's defaults and with n-gram and phrase bans,
a repetition penalty, and lengths that leave a reply no token (min_length above max_length,
which the settings validation refuses, so the numbers are set directly). `--compare` prints
which arrays differ from an earlier snapshot and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from chatbot.bot import Chatbot
from chatbot.evaluation.evaluate import load_examples
from chatbot.tokenizer import PAD_ID

FIELDS = ("tokens", "log_probs", "scores", "lengths")
SETTINGS = {
    "greedy": dict(strategy="greedy", no_repeat_ngram=0, min_length=0),
    "greedy_blocking": dict(
        strategy="greedy", no_repeat_ngram=2, block_context_ngram=2, min_length=3
    ),
    "beam5": dict(strategy="beam", beam_width=5, n_best=5, no_repeat_ngram=0, min_length=0),
    "beam_defaults": dict(strategy="beam"),
    "beam_bans": dict(
        strategy="beam",
        beam_width=3,
        n_best=3,
        banned_phrases=["i don't know", "yes"],
        block_context_ngram=2,
        repetition_penalty=1.3,
    ),
    "beam_no_token_left": dict(strategy="beam", beam_width=4, n_best=4, no_repeat_ngram=0),
    "greedy_no_token_left": dict(strategy="greedy", no_repeat_ngram=0),
    "sample_defaults": dict(strategy="sample", seed=3),
    "sample_top_k": dict(strategy="sample", seed=5, n_best=3, top_k=20, top_p=1.0, temperature=1.2),
    "sample_no_token_left": dict(strategy="sample", seed=7, n_best=2),
    "sample_bans": dict(
        strategy="sample",
        seed=11,
        banned_phrases=["i don't know"],
        repetition_penalty=1.2,
        block_context_ngram=1,
    ),
}
# `Chatbot.load` options per snapshot part: TensorFlow in graph mode, under XLA, and Lite
LOADS = {"tf": dict(runtime="tf"), "xla": dict(jit_compile=True), "lite": dict(runtime="lite")}


def snapshot(model: str, data: str, limit: int) -> dict[str, np.ndarray]:
    examples = load_examples(data, "valid")[:limit]
    arrays = {}
    for runtime, options in LOADS.items():
        bot = Chatbot.load(model, **options)
        sources = [
            np.array([bot.context_ids(e.context[-1], list(e.context[:-1]))], np.int32)
            for e in examples
        ]
        width = max(source.shape[1] for source in sources)
        batch = np.concatenate(
            [np.pad(s, ((0, 0), (0, width - s.shape[1])), constant_values=PAD_ID) for s in sources]
        )
        for name, settings in SETTINGS.items():
            spec, knobs, _ = bot.plan(bot.settings(**settings))
            if name.endswith("no_token_left"):
                knobs = knobs._replace(min_length=tf.constant(8), max_length=tf.constant(5))
            one_by_one = [bot.generator.generate(source, spec, knobs) for source in sources]
            for field in FIELDS:
                parts = [getattr(decoded, field) for decoded in one_by_one]
                arrays[f"{runtime}/{name}/{field}"] = np.concatenate(parts)
            if runtime != "lite":  # Lite decodes single sources only
                decoded = bot.generator.generate(batch, spec, knobs)
                for field in FIELDS:
                    arrays[f"{runtime}/{name}/batch/{field}"] = getattr(decoded, field)
    return arrays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output")
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--compare", help="an earlier snapshot's .npz file")
    args = parser.parse_args()
    arrays = snapshot(args.model, args.data, args.limit)
    np.savez(args.out, **arrays)
    if not args.compare:
        return
    with np.load(args.compare) as before:
        names = sorted(set(before.files) | set(arrays))
        differing = [
            name
            for name in names
            if name not in before.files
            or name not in arrays
            or not np.array_equal(before[name], arrays[name])
        ]
    print(json.dumps({"arrays": len(names), "differing": differing}))
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
