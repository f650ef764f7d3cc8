"""Decoding speed in each runtime, against the PyTorch peer, as JSON.

    python bench/decoding_speed.py --peer-python /tmp/peer/bin/python [--rounds 3]

Each round runs `chatbot bench`'s decoding measurement (`chatbot.benchmark.decoding_speed`:
random weights at the config's dimensions, 10 decoder steps from a 10-token source, greedy at
batch 1 and 32, beam 5 at batch 1) once per runtime, then the peer
(`../shared/bench/peer_torch.py`), so that all of them see the same machine load; every figure
is the median over rounds. Ratios: `greedy_b1_vs_peer` (the peer's greedy time over ours, the
issue's target is 3) and `beam5_over_greedy` (beam 5 over greedy at batch 1, target 1.5 at most;
`beam5_over_greedy_by_round` shows how much it moves from round to round).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import peer_speed  # a sibling script, not a package

from chatbot.benchmark import decoding_speed
from chatbot.config import RUNTIMES, load_config

KEYS = ("greedy_ms_b1", "greedy_ms_b32", "beam5_ms_b1")
PEER_STEPS = 20  # the peer's own default number of timed training steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/reference.yaml")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--peer-python", help="a Python with torch, to run the peer")
    parser.add_argument("--peer-script", default=str(Path("../shared/bench/peer_torch.py")))
    args = parser.parse_args()
    config = load_config(args.config)
    runtimes = args.runtimes.split(",")
    ours: dict[str, list[dict[str, float]]] = {runtime: [] for runtime in runtimes}
    peer = []
    for _ in range(args.rounds):
        for runtime in runtimes:
            ours[runtime].append(decoding_speed(config, repeats=args.repeats, runtime=runtime))
        if args.peer_python:
            peer.append(peer_speed(args.peer_python, args.peer_script, PEER_STEPS))
    result: dict[str, object] = {"benchmark": "decoding_speed", "config": args.config}
    result["rounds"] = args.rounds
    peer_figures = {key: statistics.median(r[key] for r in peer) for key in KEYS[:2] if peer}
    if peer:
        result["peer"] = peer_figures
    for runtime, rounds in ours.items():
        figures = {key: round(statistics.median(r[key] for r in rounds), 2) for key in KEYS}
        figures["beam5_over_greedy"] = round(figures["beam5_ms_b1"] / figures["greedy_ms_b1"], 2)
        figures["beam5_over_greedy_by_round"] = [
            round(r["beam5_ms_b1"] / r["greedy_ms_b1"], 2) for r in rounds
        ]
        if peer:
            ratio = peer_figures["greedy_ms_b1"] / figures["greedy_ms_b1"]
            figures["greedy_b1_vs_peer"] = round(ratio, 2)
        result[runtime] = figures
    print(json.dumps(result))


if __name__ == "__main__":
    main()
