"""What a training run tells: each epoch's record (to the history, TensorBoard and the log) and
the model card. Everything goes through `logging` (logger `chatbot.training`), so the CLI shows
it on the console and a program embedding the trainer routes it wherever it logs."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from chatbot import __version__
from chatbot.config import TrainingConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.prepare import PreparedData
from chatbot.training.callbacks import Summaries
from chatbot.training.schedules import teacher_forcing_probability

log = logging.getLogger(__name__)

TRAIN_SUMMARIES = (
    "loss",
    "perplexity",
    "ranking_loss",
    "learning_rate",
    "teacher_forcing",
    "train_tokens_per_s",
)


@dataclass
class TrainReport:
    bundle: Path
    work_dir: Path
    epochs_done: int
    stopped: str  # "finished", "early_stopping" or "time_budget"
    best: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    tokens_per_second: float = 0.0


class Reporter:
    """Epoch records, written to TensorBoard (by the chief only, under `logs_dir`) and logged."""

    def __init__(self, training: TrainingConfig, logs_dir: Path, *, is_chief: bool) -> None:
        self.training = training
        self.summaries = Summaries(str(logs_dir)) if is_chief else None

    def epoch_record(
        self, model: Seq2Seq, logs: dict[str, list[float]], epoch: int, seconds: float
    ) -> dict[str, Any]:
        """The history entry of `epoch`: its last training logs, step and schedules."""
        record: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(seconds, 2)}
        for key in ("loss", "perplexity", "ranking_loss"):
            if logs.get(key):
                record[key] = float(logs[key][-1])
        step = model.optimizer.iterations
        record["step"] = int(step.numpy())
        record["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        sampling = self.training.scheduled_sampling
        record["teacher_forcing"] = float(teacher_forcing_probability(sampling, step))
        return record

    def epoch_done(self, record: dict[str, Any]) -> None:
        """Write the epoch's record to TensorBoard and log it in one line."""
        if self.summaries is not None:
            step = record["step"]
            self.summaries.write("train", step, {k: record.get(k) for k in TRAIN_SUMMARIES})
            valid = {"loss": record.get("val_loss"), "perplexity": record.get("val_perplexity")}
            self.summaries.write("valid", step, valid)
        shown = ", ".join(
            f"{k} {v:,.0f}" if abs(v) >= 1000 else f"{k} {v:.4g}"
            for k, v in record.items()
            if isinstance(v, float)
        )
        log.info("epoch %s: %s", record["epoch"], shown)


def model_card(
    report: TrainReport,
    data: PreparedData,
    *,
    command: str,
    strategy: str,
    replicas: int,
    precision: str,
    init_from: Path | None = None,
) -> dict[str, Any]:
    """card.json: where the model came from (command, data, both splits' inputs, the bundle it
    started from), how it trained, its best metrics, and the machine and versions it trained on."""
    stats = data.stats()
    return {
        "chatbot_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "data": {
            "path": str(data.path),
            "corpus": stats.get("corpus"),
            "splits": stats.get("splits"),
            "inputs": data.manifest.get("inputs"),
            "valid_inputs": data.manifest.get("valid_inputs"),
        },
        "training": {
            "epochs_done": report.epochs_done,
            "stopped": report.stopped,
            "seconds": report.seconds,
            "train_tokens_per_s": report.tokens_per_second,
            "strategy": strategy,
            "replicas": replicas,
            "precision": precision,
            "init_from": str(init_from) if init_from else None,
        },
        "metrics": report.best,
        "hardware": {
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        },
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
    }
