"""Score blind SSA ratings per system, with the human references as the control.

    python bench/ssa_score.py --pack build/ssa/run1 --ratings build/ssa/run1/ratings-*.jsonl \
        [--markdown]

Reads the pack's key.jsonl and the raters' files (one {"id", "sensible", "specific"} object a
line) and prints, per system, the replies rated, the sensible rate, the sensible-and-specific
rate and SSA, their mean (chatbot.evaluation.ssa). A reply marked specific but not sensible
counts as not specific. Read a system's score only next to the control's: a rater who gives
the human references far less than 0.85 SSA was not rating carefully.

For a pack written with `bench/ssa_pack.py --ranks N`, `--ranks` also prints, per system and
for k = 1..N, the share of contexts where one of its first k candidates was rated sensible:
how often the ranking had a sensible reply to choose.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chatbot.evaluation.ssa import (
    markdown_table,
    parse_ratings,
    read_jsonl,
    score,
    sensible_within,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True, type=Path, help="folder with key.jsonl")
    parser.add_argument("--ratings", required=True, nargs="+", type=Path)
    parser.add_argument("--markdown", action="store_true", help="also print a table")
    parser.add_argument("--ranks", action="store_true", help="also print sensible-within-k")
    args = parser.parse_args()
    ratings = [rating for path in args.ratings for rating in parse_ratings(path)]
    key = read_jsonl(args.pack / "key.jsonl")
    results = score(key, ratings)
    print(json.dumps(results, indent=2))
    if args.markdown:
        print(markdown_table(results))
    if args.ranks:
        print(json.dumps({"sensible_within_k": sensible_within(key, ratings)}, indent=2))


if __name__ == "__main__":
    main()
