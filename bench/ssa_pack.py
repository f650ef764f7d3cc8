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
reply. bench/ssa_score.py scores the ratings.
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
from chatbot.evaluation.evaluate import generate_replies, load_examples
from chatbot.evaluation.ssa import build_pack, choose_examples, write_pack
from chatbot.examples import Example

SYSTEM_KEYS = ("model", "defaults")


def system_settings(bot: Chatbot, spec: dict[str, Any]) -> DecodingConfig:
    """A system's full decoding settings: its overrides over the neutral or bundle defaults."""
    overrides = {key: value for key, value in spec.items() if key not in SYSTEM_KEYS}
    if spec.get("defaults", "neutral") == "bundle":
        return bot.settings(**overrides)
    return bot.settings(**{**DecodingConfig().model_dump(), **overrides})


def system_replies(bot: Chatbot, settings: DecodingConfig, examples: list[Example]) -> list[str]:
    messages = [example.context[-1] for example in examples]
    histories = [example.context[:-1] for example in examples]
    return generate_replies(bot, messages, histories, 32, settings.model_dump())[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="the bundle systems answer with")
    parser.add_argument("--data", required=True, help="a `chatbot prepare` output or .jsonl")
    parser.add_argument("--split", choices=("train", "valid"), default="valid")
    parser.add_argument("--systems", required=True, help="YAML: name -> decoding settings")
    parser.add_argument("--contexts", type=int, default=100)
    parser.add_argument("--parts", type=int, default=1, help="rater packs to split into")
    parser.add_argument("--seed", type=int, default=0, help="contexts, ids and shuffle")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()

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
        replies[name] = system_replies(bot, settings, picked)
        used[name] = {"model": path, "decoding": settings.model_dump(mode="json")}
    items = build_pack(examples, chosen, replies, seed=args.seed)
    parts = write_pack(items, args.out, args.parts)
    (args.out / "systems.json").write_text(json.dumps(used, indent=2) + "\n", encoding="utf-8")
    print(
        json.dumps({"items": len(items), "contexts": len(chosen), "parts": [str(p) for p in parts]})
    )


if __name__ == "__main__":
    main()
