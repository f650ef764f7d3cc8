"""How often a bundle stored at float16 replies exactly as the float32 original, as JSON.

    python bench/float16_agreement.py --model models/default --data build/runs/dd3 \
        [--limit 1000] [--out build/models/default-f16]

Writes the bundle again with its weights stored as float16 (`Bundle.save(float16=True)`, as
`chatbot average --float16` does), then decodes the first `--limit` validation contexts with
both under greedy search, beam search and the bundle's own (seeded) defaults, and prints the
share of identical replies per setting and both model.keras sizes. A backward model (the
bundle's `backward/` folder, for MMI-bidi defaults) is copied as it is, so only the forward
model's precision differs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.bot import BACKWARD, Chatbot
from chatbot.bundle import MODEL, Bundle
from chatbot.evaluation.evaluate import load_examples

SETTINGS = {
    "greedy": {"strategy": "greedy", "n_best": 1, "no_repeat_ngram": 3},
    "beam 5": {"strategy": "beam", "beam_width": 5, "n_best": 1, "no_repeat_ngram": 3},
    "bundle defaults, seed 0": {"seed": 0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="where the float16 copy goes (a temp folder)")
    args = parser.parse_args()
    out = args.out or Path(f"{args.model.rstrip('/')}-float16")
    Bundle.load(args.model).save(out, overwrite=True, float16=True)
    if (Path(args.model) / BACKWARD).is_dir():
        shutil.copytree(Path(args.model) / BACKWARD, out / BACKWARD)
    full, half = Chatbot.load(args.model), Chatbot.load(out)
    examples = load_examples(args.data)[: args.limit]
    messages = [example.context[-1] for example in examples]
    histories = [example.context[:-1] for example in examples]
    sizes = {"float32": (Path(args.model) / MODEL).stat().st_size}
    sizes["float16"] = (out / MODEL).stat().st_size
    results: dict[str, object] = {"bytes": sizes, "examples": len(examples)}
    for name, settings in SETTINGS.items():
        same = 0
        for start in range(0, len(examples), 50):
            batch = slice(start, start + 50)
            a = full.reply_batch(messages[batch], histories[batch], **settings)
            b = half.reply_batch(messages[batch], histories[batch], **settings)
            same += sum(x.text == y.text for x, y in zip(a, b, strict=True))
        results[name] = same / len(examples)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
