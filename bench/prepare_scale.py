"""How `chatbot prepare` and one training epoch's input pass scale with the corpus.

Builds synthetic JSONL corpora of 50k, 200k and 1M dialogues from DailyDialog's training
dialogues (each a random one of them with about one word in ten swapped for a random corpus
word, so texts are mostly distinct), then, each in a fresh process, runs `prepare` with
configs/default.yaml's data section and reads every training batch of one epoch through the
trainer's input pipeline (`Loops.distributed`). Prints one JSON line per step with its wall
time and the process's peak RSS; docs/performance.md quotes the figures (the target: at most
1 GB at 1M dialogues, within 1.3 times the 50k figure, time linear in the corpus).

    python bench/prepare_scale.py [--sizes 50000 200000 1000000] [--work build/prepare-scale]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ZIP = ROOT.parent / "shared" / "data" / "dailydialog" / "train.zip"
CONFIG = ROOT / "configs" / "default.yaml"
SWAP = 0.1  # share of words replaced by a random corpus word
FILE_DIALOGUES = 100_000  # dialogues per corpus file


def build_corpus(size: int, out: Path, seed: int = 0) -> None:
    """`size` dialogues as JSONL files in `out`, from DailyDialog's with random word swaps."""
    from chatbot.corpora import load_corpus

    dialogues = load_corpus("dailydialog", [TRAIN_ZIP]).dialogues
    base = [[turn.text.split() for turn in dialogue.turns] for dialogue in dialogues]
    words = sorted({w for dialogue in base for turn in dialogue for w in turn})
    rng = random.Random(seed)
    out.mkdir(parents=True)
    for start in range(0, size, FILE_DIALOGUES):
        with (out / f"part-{start // FILE_DIALOGUES:04d}.jsonl").open("w") as handle:
            for _ in range(min(FILE_DIALOGUES, size - start)):
                turns = [
                    " ".join(rng.choice(words) if rng.random() < SWAP else w for w in turn)
                    for turn in rng.choice(base)
                ]
                handle.write(json.dumps({"turns": turns}) + "\n")


def run_prepare(corpus: Path, out: Path) -> dict[str, object]:
    from chatbot.config import load_config
    from chatbot.prepare import prepare

    stats = prepare("jsonl", [corpus], out, load_config(CONFIG, []).data, overwrite=True)
    return {
        "examples": sum(s["examples"] for s in stats["splits"].values()),
        "tensorflow_imported": "tensorflow" in sys.modules,
    }


def run_input_pass(data_dir: Path) -> dict[str, object]:
    """Every batch of one training epoch, as `chatbot train` reads them."""
    from chatbot.config import load_config
    from chatbot.prepare import PreparedData
    from chatbot.training.loops import Loops, make_strategy

    data = PreparedData.load(data_dir)
    training = load_config(CONFIG, []).training
    loops = Loops(
        make_strategy("default"),
        training,
        multi_worker=False,
        max_source_len=data.config.max_source_len,
        max_target_len=data.config.max_target_len,
    )
    dataset, steps = loops.distributed(data.shards("train"), shuffle=True, seed=training.seed)
    batches = sum(1 for _ in dataset)
    assert batches == steps, (batches, steps)
    return {"batches": batches, "batch_size": training.batch_size}


def measure(step: str, size: int, work: Path) -> dict[str, object]:
    """Run one step in this process and report its time and peak RSS."""
    corpus, data = work / f"corpus-{size}", work / f"data-{size}"
    started = time.perf_counter()
    result = run_prepare(corpus, data) if step == "prepare" else run_input_pass(data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "step": step,
        "dialogues": size,
        **result,
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_gb": round(peak / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "prepare-scale")
    parser.add_argument("--step", choices=["prepare", "input"], help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep corpora and prepared data")
    args = parser.parse_args()
    if args.step:  # one measurement, in a process of its own
        print(json.dumps(measure(args.step, args.sizes[0], args.work)), flush=True)
        return
    for size in args.sizes:
        if not (args.work / f"corpus-{size}").exists():
            build_corpus(size, args.work / f"corpus-{size}")
        for step in ("prepare", "input"):
            command = [sys.executable, __file__, "--step", step, "--sizes", str(size)]
            subprocess.run([*command, "--work", str(args.work)], check=True)
        if not args.keep:
            shutil.rmtree(args.work / f"corpus-{size}")
            shutil.rmtree(args.work / f"data-{size}")


if __name__ == "__main__":
    main()
