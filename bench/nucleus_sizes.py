"""How many tokens the nucleus of each sampled step holds, as JSON: the measurement behind the
sampling filter's sort sizes (`NUCLEUS_HEAD`, `NUCLEUS_WIDE` in `chatbot/decoding/sampling.py`).

    python bench/nucleus_sizes.py --model models/default --data build/runs/dd3 --limit 150

For the first `--limit` validation examples, the bundle replies with its decoding defaults
(sampling, seeded per example); the decoder is then run teacher-forced over that reply, and
each step's distribution, at the defaults' temperature, gives the number of likeliest tokens
whose probability first reaches top_p. Prints the median and the shares of steps above the
head and the wide head.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from chatbot.bot import Chatbot
from chatbot.decoding.sampling import NUCLEUS_HEAD, NUCLEUS_WIDE
from chatbot.evaluation.evaluate import load_examples
from chatbot.tokenizer import BOS_ID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output")
    parser.add_argument("--limit", type=int, default=150)
    args = parser.parse_args()
    bot = Chatbot.load(args.model)
    defaults = bot.settings()
    sizes = []
    for seed, example in enumerate(load_examples(args.data, "valid")[: args.limit]):
        source = np.array([bot.context_ids(example.context[-1], example.context[:-1])], np.int32)
        spec, knobs, _ = bot.plan(bot.settings(seed=seed))
        decoded = bot.generator.generate(source, spec, knobs)
        reply = decoded.tokens[0, 0, : decoded.lengths[0, 0] + 1]  # with its EOS
        decoder_input = np.concatenate([[BOS_ID], reply[:-1]])[None].astype(np.int32)
        logits = bot.generator.model({"source_ids": source, "decoder_input_ids": decoder_input})
        probs = tf.nn.softmax(logits[0] / defaults.temperature).numpy()
        mass = np.cumsum(-np.sort(-probs, axis=-1), axis=-1)
        sizes.extend((mass < defaults.top_p).sum(axis=-1) + 1)
    sizes = np.array(sizes)
    result = {
        "benchmark": "nucleus_sizes",
        "steps": len(sizes),
        "temperature": defaults.temperature,
        "top_p": defaults.top_p,
        "median": float(np.median(sizes)),
        f"over_{NUCLEUS_HEAD}": round(float(np.mean(sizes > NUCLEUS_HEAD)), 4),
        f"over_{NUCLEUS_WIDE}": round(float(np.mean(sizes > NUCLEUS_WIDE)), 4),
        "max": int(sizes.max()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
