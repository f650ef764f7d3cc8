"""Training speed at a config's dimensions, optionally against the PyTorch peer, as JSON.

    python bench/train_speed.py --config configs/reference.yaml \
        --peer-python /tmp/peer/bin/python --peer-script ../shared/bench/peer_torch.py

Ours: the median train step (forward, backward, Adam update with clipping) of the Keras model
on random data, batch from the config, source and target length 10, after warm-up steps. The
peer prints the same keys. Rounds alternate ours and the peer so both see the same machine
load; the reported figure for each is the median over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from chatbot.benchmark import training_speed
from chatbot.config import load_config


def peer_speed(python: str, script: str, steps: int) -> dict[str, float]:
    completed = subprocess.run(
        [python, script, "--steps", str(steps)], capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/reference.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-python", help="a Python with torch, to run the peer")
    parser.add_argument("--peer-script", default=str(Path("../shared/bench/peer_torch.py")))
    args = parser.parse_args()
    config = load_config(args.config)
    ours, peer = [], []
    for _ in range(args.rounds):
        ours.append(training_speed(config, steps=args.steps))
        if args.peer_python:
            peer.append(peer_speed(args.peer_python, args.peer_script, args.steps))
    result: dict[str, object] = {
        "benchmark": "train_speed",
        "config": args.config,
        "batch_size": config.training.batch_size,
        "source_len": 10,
        "target_len": 10,
        "rounds": args.rounds,
        "train_step_ms": statistics.median(r["train_step_ms"] for r in ours),
        "train_tokens_per_s": statistics.median(r["train_tokens_per_s"] for r in ours),
        "machine": {"cpus": os.cpu_count(), "processor": platform.machine()},
    }
    if peer:
        peer_tokens = statistics.median(r["train_tokens_per_s"] for r in peer)
        result["peer_train_step_ms"] = statistics.median(r["train_step_ms"] for r in peer)
        result["peer_train_tokens_per_s"] = peer_tokens
        result["speedup_vs_peer"] = round(result["train_tokens_per_s"] / peer_tokens, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
