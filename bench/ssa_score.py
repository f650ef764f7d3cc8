"""Score blind SSA ratings per system, with the human references as the control.

    python bench/ssa_score.py --pack build/ssa/run1 --ratings build/ssa/run1/ratings-*.jsonl \
        [--markdown]

Reads the pack's key.jsonl and the raters' files (one {"id", "sensible", "specific"} object a
line) and prints, per system, the replies rated, the sensible rate, the sensible-and-specific
rate and SSA, their mean (chatbot.evaluation.ssa). A reply marked specific but not sensible
counts as not specific. Read a system's score only next to the control's: a rater who gives
the human references far less than 0.85 SSA was not rating carefully.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chatbot.evaluation.ssa import markdown_table, parse_ratings, read_jsonl, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pack", required=True, type=Path, help="folder with key.jsonl")
    parser.add_argument("--ratings", required=True, nargs="+", type=Path)
    parser.add_argument("--markdown", action="store_true", help="also print a table")
    args = parser.parse_args()
    ratings = [rating for path in args.ratings for rating in parse_ratings(path)]
    results = score(read_jsonl(args.pack / "key.jsonl"), ratings)
    print(json.dumps(results, indent=2))
    if args.markdown:
        print(markdown_table(results))


if __name__ == "__main__":
    main()
