"""Reply quality of several decoding settings on one bundle and split, as JSON (and a table).

    python bench/decoding_quality.py --model models/default --data build/dailydialog \
        [--limit N] [--candidates FILE.yaml] [--markdown]

Each candidate is a named set of decoding overrides of the neutral defaults (`DecodingConfig`:
greedy, no blocking, minimum length 1), never of the bundle's own defaults, run through
`chatbot evaluate` on the same examples: distinct-1/2, the share of generic replies, of
replies repeating a 3-gram and of the most common reply, mean length and sacreBLEU against the
references. Perplexity does not depend on decoding, so it is reported once. The default
candidates compare greedy, beam search (length penalty, n-gram blocking), beam search with
MMI reranking and sampling; this is how the default model's serving defaults are chosen
(models/default/CARD.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.bot import Chatbot
from chatbot.config import DecodingConfig, read_yaml
from chatbot.evaluation.evaluate import evaluate, load_examples

BLOCK = {"no_repeat_ngram": 3}
CANDIDATES: dict[str, dict[str, Any]] = {
    "greedy": {"strategy": "greedy"},
    "greedy, no repeat": {"strategy": "greedy", **BLOCK},
    "beam 5, lp 1.0, no repeat": {
        "strategy": "beam",
        "beam_width": 5,
        "length_penalty": 1.0,
        **BLOCK,
    },
    "beam 5 + MMI 0.3": {
        "strategy": "beam",
        "beam_width": 5,
        "n_best": 5,
        "length_penalty": 1.0,
        "mmi_lambda": 0.3,
        **BLOCK,
    },
    "beam 5 + MMI 0.5": {
        "strategy": "beam",
        "beam_width": 5,
        "n_best": 5,
        "length_penalty": 1.0,
        "mmi_lambda": 0.5,
        **BLOCK,
    },
    "sample t0.7 p0.9": {
        "strategy": "sample",
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 0,
        **BLOCK,
    },
    "sample t0.7 p0.9, best of 4 + MMI 0.3": {
        "strategy": "sample",
        "temperature": 0.7,
        "top_p": 0.9,
        "n_best": 4,
        "mmi_lambda": 0.3,
        "seed": 0,
        **BLOCK,
    },
    # The second round for the default model: the first round's generic share was too high for
    # every deterministic setting, so hotter sampling and a minimum length were tried.
    "sample t0.9 p0.9": {
        "strategy": "sample",
        "temperature": 0.9,
        "top_p": 0.9,
        "seed": 0,
        **BLOCK,
    },
    "sample t0.7 p0.9, min length 5": {
        "strategy": "sample",
        "temperature": 0.7,
        "top_p": 0.9,
        "min_length": 5,
        "seed": 0,
        **BLOCK,
    },
    "beam 5 + MMI 0.5, min length 6": {
        "strategy": "beam",
        "beam_width": 5,
        "n_best": 5,
        "length_penalty": 1.0,
        "mmi_lambda": 0.5,
        "min_length": 6,
        **BLOCK,
    },
    "sample t0.8 p0.9, min length 4": {
        "strategy": "sample",
        "temperature": 0.8,
        "top_p": 0.9,
        "min_length": 4,
        "seed": 0,
        **BLOCK,
    },
    "sample t0.8 p0.9, min length 6": {
        "strategy": "sample",
        "temperature": 0.8,
        "top_p": 0.9,
        "min_length": 6,
        "seed": 0,
        **BLOCK,
    },
    "sample t0.7 p0.9, best of 4 + MMI 0.5, min length 5": {
        "strategy": "sample",
        "temperature": 0.7,
        "top_p": 0.9,
        "n_best": 4,
        "mmi_lambda": 0.5,
        "min_length": 5,
        "seed": 0,
        **BLOCK,
    },
}
COLUMNS = (
    ("distinct_1", "distinct-1", "{:.3f}"),
    ("distinct_2", "distinct-2", "{:.3f}"),
    ("generic_share", "generic", "{:.1%}"),
    ("repeated_3gram_share", "repeated 3-gram", "{:.1%}"),
    ("top_reply_share", "top reply", "{:.1%}"),
    ("mean_length", "mean length", "{:.1f}"),
    ("bleu", "BLEU", "{:.2f}"),
)


def markdown(results: dict[str, Any]) -> str:
    header = ["decoding", *(title for _, title, _ in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in results["candidates"].items():
        cells = [name, *(fmt.format(row[key]) for key, _, fmt in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model bundle")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output or a .jsonl")
    parser.add_argument("--split", choices=("train", "valid"), default="valid")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--candidates", help="YAML mapping of name -> decoding overrides")
    parser.add_argument("--markdown", action="store_true", help="also print a table to stderr")
    args = parser.parse_args()

    candidates = read_yaml(args.candidates) if args.candidates else CANDIDATES
    bot = Chatbot.load(args.model)
    examples = load_examples(args.data, args.split)
    results: dict[str, Any] = {"model": args.model, "data": args.data, "candidates": {}}
    neutral = DecodingConfig().model_dump()  # not the bundle's defaults, which a row would inherit
    for name, decoding in candidates.items():
        settings = {**neutral, **decoding}
        report = evaluate(bot, examples, batch_size=args.batch_size, limit=args.limit, **settings)
        results["examples"] = report.pop("examples")
        results["perplexity"] = report.pop("perplexity")
        report.pop("nll_per_token")
        results["candidates"][name] = {"overrides": decoding, **report}
        print(f"{name}: done in {report['seconds']:.0f}s", file=sys.stderr)
    print(json.dumps(results))
    if args.markdown:
        print(markdown(results), file=sys.stderr)


if __name__ == "__main__":
    main()
