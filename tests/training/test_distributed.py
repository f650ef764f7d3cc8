"""tf.distribute: two `multi_worker` processes on loopback must train one and the same model, and
`mirrored` must train in-process (one replica on a CPU)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from chatbot.bundle import Bundle
from chatbot.config import load_config
from chatbot.prepare import PreparedData
from chatbot.training.trainer import TrainOptions, train

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "tiny.yaml"
WORKER_TIMEOUT_S = 120
# Differ between workers by nature: wall-clock measurements.
TIMINGS = {"seconds", "train_tokens_per_s"}


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS has just handed out on loopback (all held at once, so they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def run_together(commands: list[tuple[list[str], dict[str, str]]], logs: list[Path]) -> list[int]:
    """Start every (argv, env) at once, output to its log, and wait for all; exit codes, with -9
    for a process killed at the timeout (a worker left alone would wait for its peer forever)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for (argv, env), log in zip(commands, logs, strict=True):
            with log.open("wb") as stream:
                processes.append(
                    subprocess.Popen(argv, env=env, cwd=ROOT, stdout=stream, stderr=stream)
                )
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                break
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [process.returncode for process in processes]


def test_two_workers_on_loopback_end_with_identical_weights(prepared: Path, tmp_path: Path):
    """Both workers all-reduce every gradient, so their bundles must match bit for bit; each
    reads its own half of the shard files; the chief alone writes the run's logs and shared
    checkpoints."""
    ports = free_ports(2)
    commands = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        argv = [sys.executable, "-m", "chatbot.cli", "train", "--config", str(CONFIG)]
        argv += ["--data", str(prepared), "--strategy", "multi_worker"]
        argv += ["--out", str(tmp_path / f"model-{index}")]
        argv += ["--work-dir", str(tmp_path / f"work-{index}")]
        argv += [arg for value in TINY for arg in ("--set", value)]
        commands.append((argv, env))
    logs = [tmp_path / f"worker-{index}.log" for index in range(2)]
    codes = run_together(commands, logs)
    output = "\n".join(
        f"--- worker {index}, exit {code} ---\n{log.read_text(errors='replace')}"
        for index, (code, log) in enumerate(zip(codes, logs, strict=True))
    )
    assert codes == [0, 0], output
    data = PreparedData.load(prepared)
    every = {s.path.name for split in ("train", "valid") for s in data.shards(split)}
    lines = [re.findall(r"input pipeline \d of 2 reads (.*)", log.read_text()) for log in logs]
    read = [{name for names in found for name in names.split()} for found in lines]
    assert read[0] and read[1] and not read[0] & read[1], output  # each its own files
    assert read[0] | read[1] == every and len(every) == 16, output  # 8 a split, all read
    first = [
        f"{split}-{i:05d}-of-00008.tfrecord" for split in ("train", "valid") for i in (0, 2, 4, 6)
    ]
    assert sorted(read[0]) == first, output  # worker i reads every 2nd file from the i-th

    chief, other = Bundle.load(tmp_path / "model-0"), Bundle.load(tmp_path / "model-1")
    for ours, theirs in zip(chief.model.weights, other.model.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
    steps = [record["step"] for record in chief.history]
    assert steps == [record["step"] for record in other.history]
    assert steps[0] > 0 and steps == [steps[0], 2 * steps[0]], steps
    for ours, theirs in zip(chief.history, other.history, strict=True):
        assert {k: v for k, v in ours.items() if k not in TIMINGS} == {
            k: v for k, v in theirs.items() if k not in TIMINGS
        }
    assert chief.card["training"]["replicas"] == 2
    assert (tmp_path / "work-0" / "checkpoints").is_dir()
    assert (tmp_path / "work-0" / "logs").is_dir()
    assert not (tmp_path / "work-1" / "checkpoints").exists()
    assert not (tmp_path / "work-1" / "logs").exists()


def test_mirrored_strategy_trains_in_process(prepared: Path, tmp_path: Path):
    """MirroredStrategy runs Keras' own distributed fit and evaluate (one replica on a CPU)."""
    config = load_config(CONFIG, [*TINY, "training.epochs=1"])
    options = TrainOptions(strategy="mirrored", verbose=False)
    report = train(config, prepared, tmp_path / "model", options)
    assert report.stopped == "finished" and report.epochs_done == 1
    bundle = Bundle.load(tmp_path / "model")
    assert bundle.card["training"]["strategy"] == "mirrored"
    assert bundle.history[0]["step"] > 0
    assert np.isfinite(bundle.history[0]["val_loss"])
