"""Which ranking signal tells the sensible candidates from the others? Read from a rated pack.

    python bench/ssa_rank_features.py --model models/default --data build/runs/dd3v2 \
        --pack build/ssa/ranks27 --ratings build/ssa/ranks27/ratings-*.jsonl \
        --system "shipped defaults" [--backward build/cand/bwdrank ...] [--markdown]

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

Each `--backward` bundle (a backward model trained on `data.direction: backward` examples)
adds its MMI-bidi term and the ranking score with that term in place of the bundle's own, so a
new backward model is judged on candidates already rated. Beside each AUC, the share of
contexts whose best candidate by that term was rated sensible: what choosing by it among the
rated candidates alone would have given (the system's own reply is the ranking score's).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from chatbot.bot import Candidate, Chatbot, length_normalized
from chatbot.bundle import Bundle
from chatbot.config import DecodingConfig
from chatbot.errors import DataError
from chatbot.evaluation.evaluate import load_examples, replies_in_batches
from chatbot.evaluation.ssa import (
    display,
    parse_ratings,
    ranked_name,
    read_jsonl,
    sensible_by_rank,
    top_pick_sensible,
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


def backward_terms(
    candidates: list[Candidate],
    message: str,
    settings: DecodingConfig,
    terms: dict[str, np.ndarray],
    backward: Chatbot,
    name: str,
) -> dict[str, np.ndarray]:
    """The MMI-bidi term of `candidates` under `backward` (a bot holding another backward
    model), and the ranking score with it in place of the one in `terms`."""
    term = backward.backward_scores(candidates, [message] * len(candidates))
    score = terms["ranking score"] + settings.mmi_backward * (
        term - terms["MMI-bidi backward term"]
    )
    return {f"MMI-bidi backward term, {name}": term, f"ranking score, {name}": score}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the bundle the system answered with")
    parser.add_argument("--data", required=True, help="the data the pack was written from")
    parser.add_argument("--split", choices=("train", "valid"), default="valid")
    parser.add_argument("--pack", required=True, type=Path, help="a --ranks pack's folder")
    parser.add_argument("--ratings", required=True, nargs="+", type=Path)
    parser.add_argument("--system", required=True, help="the system rated by rank")
    parser.add_argument(
        "--backward",
        nargs="+",
        default=[],
        type=Path,
        help="backward models whose MMI-bidi term to judge in place of the bundle's",
    )
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
    if args.backward and not (settings.mmi_backward and not settings.mmi_lambda):
        raise DataError(f"--backward: system {args.system!r} ranks without MMI-bidi alone")
    backwards = {
        str(path): Chatbot(bot.bundle, backward=Chatbot(Bundle.load(path)))
        for path in args.backward
    }
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
        terms = ranking_terms(candidates, settings)
        message = examples[example].context[-1]
        for name, other in backwards.items():
            terms.update(backward_terms(candidates, message, settings, terms, other, name))
        for name, value in terms.items():
            values.setdefault(name, []).append(value)
        labels.append([rated[example][rank] for rank in range(1, len(candidates) + 1)])
    auc = {name: within_context_auc(rows, labels) for name, rows in values.items()}
    top = {name: top_pick_sensible(rows, labels) for name, rows in values.items()}
    print(json.dumps({"contexts": len(chosen), "ranks": ranks, "auc": auc, "top": top}, indent=2))
    if args.markdown:
        print("| term | AUC within contexts | its top pick sensible |\n|---|---|---|")
        for name, value in auc.items():
            print(f"| {name} | {value:.3f} | {top[name]:.2f} |")


if __name__ == "__main__":
    main()
