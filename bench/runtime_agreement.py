"""How often, and how fast, each decoding runtime replies as TensorFlow does on real contexts.

    python bench/runtime_agreement.py --model models/default --data build/runs/dd3 --limit 200

For each of the first `--limit` validation examples, one reply at a time (the case the Lite
runtimes serve) greedy and sampled with a fixed seed (the bundle's other decoding defaults),
from `tf` (with XLA, as the server runs it), `lite` and `lite-int8`; prints, as JSON, the
share of replies identical to TensorFlow's per runtime and strategy, a few that differ, and
each runtime's median time per reply (the first replies, which pay the Lite conversion or the
XLA compilation of each source-length bucket, are among the timed ones; the median is not moved
by them). Time it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.bot import Chatbot
from chatbot.config import RUNTIMES
from chatbot.evaluation.evaluate import load_examples

STRATEGIES = {"greedy": {"strategy": "greedy"}, "sample": {"strategy": "sample", "seed": 3}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/default")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    examples = load_examples(args.data, "valid")[: args.limit]
    bots = {
        runtime: Chatbot.load(args.model, runtime=runtime, jit_compile="auto")
        for runtime in RUNTIMES
    }
    result: dict[str, object] = {"model": args.model, "examples": len(examples)}
    for name, settings in STRATEGIES.items():
        replies = {}
        for runtime, bot in bots.items():
            answers = [bot.reply(e.context[-1], list(e.context[:-1]), **settings) for e in examples]
            replies[runtime] = [answer.text for answer in answers]
            median = statistics.median(answer.seconds for answer in answers)
            result[f"{name}_{runtime}_ms"] = round(1000 * median, 2)
        reference = replies["tf"]
        for runtime in RUNTIMES[1:]:
            pairs = list(zip(reference, replies[runtime], strict=True))
            same = sum(a == b for a, b in pairs)
            result[f"{name}_{runtime}_identical"] = round(same / len(pairs), 3)
            result[f"{name}_{runtime}_differing"] = [pair for pair in pairs if pair[0] != pair[1]][
                :3
            ]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
