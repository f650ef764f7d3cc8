"""Write a blind SSA rating pack: several systems' replies and the human references to the same
contexts, shuffled, under random ids, with the key kept apart.

    python bench/ssa_pack.py --model models/default --data build/runs/dd3 \
        --systems bench/ssa_systems.yaml --contexts 100 --parts 4 --out build/ssa/run1

`--systems` is a YAML mapping of system names to decoding settings over the neutral defaults
of `DecodingConfig` (greedy, no blocking, minimum length 1); `defaults: bundle` starts from the
bundle's own decoding section instead, and `model: DIR` answers with another bundle than
`--model`. Contexts are `--contexts` examples of the split from as many dialogues, drawn with
`--seed`. The output folder holds key.jsonl (who wrote what: do not show it to raters),
systems.json (the settings used), and part-N.md / part-N.jsonl for raters; each rater gets
one part and bench/ssa_rubric.md, and writes one {"id", "sensible", "specific"} line per
reply. A reply that several systems give the same context is shown once, under one id that the
key gives each of them. bench/ssa_score.py scores the ratings.

With `--ranks N`, each system's N best candidates are rated, not only its reply: the system
"NAME" is its reply and "NAME, rank K" its K-th candidate (K = 2..N), so that
`bench/ssa_score.py --ranks` can tell how often a sensible reply was among them for the
ranking to choose.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.bot import Chatbot
from chatbot.config import DecodingConfig, read_yaml
from chatbot.errors import DataError
from chatbot.evaluation.evaluate import load_examples, replies_in_batches
from chatbot.evaluation.ssa import build_pack, choose_examples, ranked_name, write_pack
from chatbot.examples import Example

SYSTEM_KEYS = ("model", "defaults")


def system_settings(bot: Chatbot, spec: dict[str, Any]) -> DecodingConfig:
    """A system's full decoding settings: its overrides over the neutral or bundle defaults."""
    overrides = {key: value for key, value in spec.items() if key not in SYSTEM_KEYS}
    if spec.get("defaults", "neutral") == "bundle":
        return bot.settings(**overrides)
    return bot.settings(**{**DecodingConfig().model_dump(), **overrides})


def system_replies(
    bot: Chatbot, settings: DecodingConfig, examples: list[Example], ranks: int = 1
) -> list[list[str]]:
    """Per example, the system's `ranks` best candidates, best first (its reply alone when
    `ranks` is 1)."""
    messages = [example.context[-1] for example in examples]
    histories = [example.context[:-1] for example in examples]
    settings = settings.model_copy(update={"n_best": max(settings.n_best, ranks)})
    candidates = [
        [candidate.text for candidate in reply.candidates[:ranks]]
        for reply in replies_in_batches(bot, messages, histories, 32, settings=settings)
    ]
    for example, found in zip(examples, candidates, strict=True):
        if len(found) < ranks:
            raise DataError(
                f"only {len(found)} candidates for the example of dialogue {example.source}; "
                "rate fewer --ranks"
            )
    return candidates


def ranked_systems(name: str, candidates: list[list[str]]) -> dict[str, list[str]]:
    """The systems to rate for `name`'s candidates: itself for the best, then one per rank."""
    return {
        ranked_name(name, rank + 1): [found[rank] for found in candidates]
        for rank in range(len(candidates[0]))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the bundle systems answer with")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output or .jsonl")
    parser.add_argument("--split", choices=("train", "valid"), default="valid")
    parser.add_argument("--systems", required=True, help="YAML: name -> decoding settings")
    parser.add_argument("--contexts", type=int, default=100)
    parser.add_argument("--parts", type=int, default=1, help="rater packs to split into")
    parser.add_argument("--seed", type=int, default=0, help="contexts, ids and shuffle")
    parser.add_argument("--ranks", type=int, default=1, help="rate each system's N best candidates")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if args.ranks < 1:
        parser.error(f"--ranks must be at least 1, got {args.ranks}")

    examples = load_examples(args.data, args.split)
    chosen = choose_examples(examples, args.contexts, args.seed)
    picked = [examples[i] for i in chosen]
    bots: dict[str, Chatbot] = {}
    replies, used = {}, {}
    for name, spec in read_yaml(args.systems).items():
        spec = spec or {}
        path = str(spec.get("model", args.model))
        if path not in bots:
            bots[path] = Chatbot.load(path)
        bot = bots[path]
        settings = system_settings(bot, spec)
        replies.update(ranked_systems(name, system_replies(bot, settings, picked, args.ranks)))
        used[name] = {"model": path, "decoding": settings.model_dump(mode="json")}
    items = build_pack(examples, chosen, replies, seed=args.seed)
    parts = write_pack(items, args.out, args.parts)
    (args.out / "systems.json").write_text(json.dumps(used, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps({"items": len(items), "contexts": len(chosen), "parts": [str(p) for p in parts]})
    )


if __name__ == "__main__":
    main()
