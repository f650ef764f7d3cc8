"""Which ranking signal tells the sensible candidates from the others? Read from a rated pack.

    python bench/ssa_rank_features.py --model models/default --data build/runs/dd3v2 \
        --pack build/ssa/ranks27 --ratings build/ssa/ranks27/ratings-*.jsonl \
        --system "shipped defaults" [--markdown]

For a pack written with `bench/ssa_pack.py --ranks N`, it answers the pack's contexts again
with the system's settings (systems.json), checks that the N best candidates are the ones
rated, and prints, for each term the ranking adds up and a few alternatives, its AUC within
contexts against the ratings (`chatbot.evaluation.ssa.within_context_auc`: the chance that
of a sensible and a not-sensible candidate to the same context, the sensible one scores
higher; 0.5 is chance). A ranking judge is only as good as this figure on its score.

The terms: the ranking score itself; the reply's log-likelihood summed, per token and under
the GNMT length penalty that the settings rank by; MMI-bidi's backward term (what the score
adds beyond the other terms, divided by `mmi_backward`, so only for settings without the
anti-LM); the match bonus's similarity; and shortness (minus the reply's tokens).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from chatbot.bot import Candidate, Chatbot, length_normalized
from chatbot.config import DecodingConfig
from chatbot.errors import DataError
from chatbot.evaluation.evaluate import load_examples, replies_in_batches
from chatbot.evaluation.ssa import (
    display,
    parse_ratings,
    ranked_name,
    read_jsonl,
    sensible_by_rank,
    within_context_auc,
)


def ranking_terms(candidates: list[Candidate], settings: DecodingConfig) -> dict[str, np.ndarray]:
    """Each ranking term of `candidates` (one context's), by name."""
    log_probs = np.array([c.log_prob for c in candidates])
    tokens = np.array([c.tokens for c in candidates])
    matches = np.array([c.match for c in candidates])
    normalized = length_normalized(log_probs, tokens, settings.length_penalty)
    terms = {
        "ranking score": np.array([c.score for c in candidates]),
        "log-likelihood": log_probs,
        "log-likelihood per token": log_probs / (tokens + 1),
        f"log-likelihood, length penalty {settings.length_penalty:g}": normalized,
        "match": matches,
        "shortness": -tokens.astype(np.float64),
    }
    if settings.mmi_backward and not settings.mmi_lambda:
        rest = terms["ranking score"] - normalized - settings.match_weight * matches
        terms["MMI-bidi backward term"] = rest / settings.mmi_backward
    return terms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the bundle the system answered with")
    parser.add_argument("--data", required=True, help="the data the pack was written from")
    parser.add_argument("--split", choices=("train", "valid"), default="valid")
    parser.add_argument("--pack", required=True, type=Path, help="a --ranks pack's folder")
    parser.add_argument("--ratings", required=True, nargs="+", type=Path)
    parser.add_argument("--system", required=True, help="the system rated by rank")
    parser.add_argument("--markdown", action="store_true", help="also print a table")
    args = parser.parse_args()

    key = read_jsonl(args.pack / "key.jsonl")
    ratings = [rating for path in args.ratings for rating in parse_ratings(path)]
    rated = sensible_by_rank(key, ratings).get(args.system)
    if not rated:
        raise DataError(f"{args.pack}: no system {args.system!r} rated by rank")
    ranks = max(rank for by_rank in rated.values() for rank in by_rank)
    spec = json.loads((args.pack / "systems.json").read_text(encoding="utf-8"))[args.system]
    bot = Chatbot.load(args.model)
    settings = DecodingConfig(**{**spec["decoding"], "n_best": ranks})
    examples = load_examples(args.data, args.split)
    chosen = sorted(rated)
    picked = [examples[i] for i in chosen]
    replies = replies_in_batches(
        bot,
        [example.context[-1] for example in picked],
        [example.context[:-1] for example in picked],
        32,
        settings=settings,
    )
    items = {(record["example"], record["system"]): record["id"] for record in key}
    texts = {
        record["id"]: record["reply"]
        for path in sorted(args.pack.glob("part-*.jsonl"))
        for record in read_jsonl(path)
    }
    values: dict[str, list[np.ndarray]] = {}
    labels = []
    for example, reply in zip(chosen, replies, strict=True):
        candidates = list(reply.candidates[:ranks])
        for rank, candidate in enumerate(candidates, start=1):
            if display(candidate.text) != texts[items[(example, ranked_name(args.system, rank))]]:
                raise DataError(
                    f"example {example}, rank {rank}: the bundle now answers "
                    f"{candidate.text!r}, not the reply rated; wrong --model or --data?"
                )
        for name, value in ranking_terms(candidates, settings).items():
            values.setdefault(name, []).append(value)
        labels.append([rated[example][rank] for rank in range(1, len(candidates) + 1)])
    auc = {name: within_context_auc(rows, labels) for name, rows in values.items()}
    print(json.dumps({"contexts": len(chosen), "ranks": ranks, "auc": auc}, indent=2))
    if args.markdown:
        print("| term | AUC within contexts |\n|---|---|")
        for name, value in auc.items():
            print(f"| {name} | {value:.3f} |")


if __name__ == "__main__":
    main()
