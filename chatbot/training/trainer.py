"""`chatbot train`: a prepared data directory in, a model bundle out, resumable at any moment.

The run keeps its state in a work directory beside the bundle (`MODEL_DIR.work/` unless told
otherwise; `chatbot.training.workspace`): the config it runs, TensorFlow checkpoints of the
whole run state and the best checkpoint so far (`chatbot.training.checkpoints`), and
TensorBoard logs (`chatbot.training.reporting`). `model.fit` drives each epoch (one call per
epoch, so a resumed run can start mid-epoch; under `multi_worker` the trainer's own loop does:
`chatbot.training.loops`); between epochs the trainer validates, keeps the best weights,
lowers the learning rate on a plateau, and stops early. The bundle is written at the end from
the best weights, atomically.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from chatbot.atomic import DiskFullError
from chatbot.bundle import Bundle
from chatbot.config import Config, DistributionStrategy, Precision
from chatbot.decoding.specificity import nidf
from chatbot.errors import ConfigError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.prepare import PreparedData
from chatbot.retrieval import ReplyBank, build_bank
from chatbot.shards import Shard, target_frequencies, target_ids
from chatbot.training.callbacks import Progress, StepCounter, TimeBudget
from chatbot.training.checkpoints import RESUME_HINT, Checkpoints, RunState
from chatbot.training.loops import Loops, make_strategy
from chatbot.training.negatives import mined_shards
from chatbot.training.optimizer import FusedAdam
from chatbot.training.reporting import Reporter, TrainReport, model_card
from chatbot.training.schedules import learning_rate
from chatbot.training.workspace import Workspace, config_differences

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    resume: bool = False
    force: bool = False
    max_minutes: float | None = None
    strategy: DistributionStrategy = "default"
    precision: Precision = "auto"
    work_dir: Path | None = None
    init_from: Path | None = None  # a bundle whose weights start the run (fine-tuning)
    command: str = ""
    verbose: bool = True  # a progress bar per epoch


@dataclass
class _Epoch:
    """What one epoch's training produced."""

    record: dict[str, Any]
    expired: bool  # the time budget ran out during it
    tokens_per_second: float


class Trainer:
    """One training run: its workspace, loops and reporter, composed."""

    def __init__(
        self, config: Config, data_dir: str | Path, out_dir: str | Path, options: TrainOptions
    ):
        self.options = options
        self.out_dir = Path(out_dir)
        self.strategy = make_strategy(options.strategy)
        work_dir = options.work_dir or self.out_dir.with_name(self.out_dir.name + ".work")
        self.workspace = Workspace(work_dir, self.strategy)
        self.data = PreparedData.load(data_dir)
        self.config = self.workspace.settle_config(
            config.model_copy(update={"data": self.data.config}),
            resume=options.resume,
            force=options.force,
        )
        training = self.config.training
        self.loops = Loops(
            self.strategy,
            training,
            multi_worker=options.strategy == "multi_worker",
            max_source_len=training.max_source_len or self.data.config.max_source_len,
            max_target_len=training.max_target_len or self.data.config.max_target_len,
        )
        self.reporter = Reporter(training, work_dir / "logs", is_chief=self.workspace.is_chief)
        self.precision = self._precision()

    @property
    def work_dir(self) -> Path:
        return self.workspace.work_dir

    @property
    def _mines_negatives(self) -> bool:
        """Whether the ranking loss takes hard negatives, mined before the first epoch."""
        training = self.config.training
        return bool(training.contrastive_weight and training.contrastive_hard_negatives)

    def _precision(self) -> str:
        if self.options.precision != "auto":
            return self.options.precision
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"

    def run(self) -> TrainReport:
        started = time.monotonic()
        deadline = started + 60 * self.options.max_minutes if self.options.max_minutes else None
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            return self._run(started, deadline)
        finally:
            keras.config.set_dtype_policy(previous_policy)

    def _build(self, seen_ids: np.ndarray | None = None) -> tuple[Seq2Seq, RunState]:
        """The model and optimizer: from `--init-from`'s weights, else fresh, with the pieces
        outside `seen_ids` (the training targets' ids) starting low."""
        training = self.config.training
        keras.utils.set_random_seed(training.seed)
        with self.strategy.scope():
            model = Seq2Seq(self.config.model, self.data.tokenizer.vocab_size)
            model.build()
            if self.options.init_from:
                model.set_weights(self._initial_weights(self.options.init_from))
            elif seen_ids is not None:
                model.start_unseen_pieces_low(seen_ids)
            optimizer = FusedAdam(
                learning_rate=learning_rate(training), global_clipnorm=training.clip_norm
            )
            if self.precision == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer)
            model.configure_training(training)
            optimizer.build(model.trainable_variables)
        return model, RunState(model, optimizer)  # outside the scope: see RunState

    def _initial_weights(self, path: Path) -> list[Any]:
        """The weights of the bundle at `path`, which must have this run's architecture and
        tokenizer (prepare with `--tokenizer` that bundle to reuse its tokenizer)."""
        bundle = Bundle.load(path)
        if bundle.tokenizer.model_proto != self.data.tokenizer.model_proto:
            raise ConfigError(
                f"--init-from {path}: its tokenizer differs from {self.data.path}'s; prepare the "
                f"data with `chatbot prepare --tokenizer {path}` to reuse it"
            )
        differences = config_differences(
            bundle.config.model.model_dump(), self.config.model.model_dump(), "model."
        )
        if differences:
            raise ConfigError(
                f"--init-from {path}: its architecture differs from this run's config: "
                + "; ".join(differences)
            )
        log.info("starting from the weights of %s", path)
        return bundle.model.get_weights()

    def _run(self, started: float, deadline: float | None) -> TrainReport:
        training = self.config.training
        train_shards, valid_shards = self.data.shards("train"), self.data.shards("valid")
        model, state = self._build(target_ids(train_shards))
        frequencies = target_frequencies(train_shards, self.data.tokenizer.vocab_size)
        if self._mines_negatives:
            train_shards = mined_shards(
                train_shards,
                self.data.tokenizer,
                training.contrastive_hard_negatives,
                self.work_dir / "negatives",
                seed=training.seed,
                side=training.contrastive_side,
            )
        checkpoints = Checkpoints(state, self.workspace.checkpoint_dir, training.keep_checkpoints)
        if self.options.resume:
            checkpoints.restore_latest()
        budget = TimeBudget(deadline)
        stopped, tokens_per_second = "finished", 0.0
        while int(state.epoch.numpy()) < training.epochs:
            epoch = self._train_epoch(model, state, checkpoints, train_shards, budget)
            tokens_per_second = epoch.tokens_per_second or tokens_per_second
            epoch.record.update(self.loops.validate(model, valid_shards))
            stop = self._end_epoch(model, state, checkpoints, epoch.record)
            if epoch.expired:
                checkpoints.save()
                stopped = "time_budget"
                break
            state.epoch.assign_add(1)
            state.position.assign(0)
            checkpoints.save()
            if stop:
                stopped = "early_stopping"
                break
        log.info("training %s after %d epoch(s)", stopped, int(state.epoch.numpy()))
        return self._finish(
            model, state, checkpoints, stopped, started, tokens_per_second, nidf(frequencies)
        )

    def _train_epoch(
        self,
        model: Seq2Seq,
        state: RunState,
        checkpoints: Checkpoints,
        shards: list[Shard],
        budget: TimeBudget,
    ) -> _Epoch:
        """Train the rest of the current epoch, from its saved position."""
        training = self.config.training
        epoch, position = int(state.epoch.numpy()), int(state.position.numpy())
        dataset, steps = self.loops.distributed(
            shards,
            shuffle=True,
            seed=training.seed + epoch,
            skip=position,
            negatives=self._mines_negatives,
        )
        progress = Progress(epoch, training.epochs, steps, position)
        saver = StepCounter(state.position, training.checkpoint_every_steps, checkpoints.save)
        callbacks: list[keras.callbacks.Callback] = [saver]
        callbacks += [budget, progress] if self.options.verbose else [budget]
        epoch_started = time.monotonic()
        logs: dict[str, list[float]] = {}
        expired = False
        if position < steps:  # a run killed during its epoch-end work has no batches left
            logs, expired = self.loops.fit(model, dataset, epoch, steps - position, callbacks)
        seconds = time.monotonic() - epoch_started
        record = self.reporter.epoch_record(model, logs, epoch, seconds)
        record["train_tokens_per_s"] = round(progress.tokens_per_second, 1)
        if expired:
            record["partial"] = True
        return _Epoch(record, expired, progress.tokens_per_second)

    def _end_epoch(
        self, model: Seq2Seq, state: RunState, checkpoints: Checkpoints, record: dict[str, Any]
    ) -> bool:
        """Record the epoch, keep the best weights, adjust the learning rate; True = stop early."""
        training = self.config.training
        score = record.get("val_loss", record.get("loss", math.inf))
        improved = score < float(state.best_loss.numpy())
        if improved:
            state.best_loss.assign(score)
            state.bad_epochs.assign(0)
        else:
            state.bad_epochs.assign_add(1)
            bad = int(state.bad_epochs.numpy())
            if training.lr_schedule == "plateau" and bad % max(training.plateau_patience, 1) == 0:
                lr = model.optimizer.learning_rate
                lr.assign(lr * training.plateau_factor)
        state.append_history(record)
        if improved:
            checkpoints.save_best()
        self.reporter.epoch_done(record)
        patience = training.early_stopping_patience
        return bool(patience) and int(state.bad_epochs.numpy()) >= patience

    def _finish(
        self,
        model: Seq2Seq,
        state: RunState,
        checkpoints: Checkpoints,
        stopped: str,
        started: float,
        tokens_per_second: float,
        token_nidf: np.ndarray,
    ) -> TrainReport:
        """Write the bundle from the best weights (the last ones if those are damaged), with
        `token_nidf` for NIDF-weighted decoding and the reply bank."""
        history = state.history_list()
        best_record = min(history, key=lambda r: r.get("val_loss", math.inf), default={})
        if checkpoints.best.latest_checkpoint and not checkpoints.restore_best(model):
            best_record = history[-1] if history else {}
        report = TrainReport(
            bundle=self.out_dir,
            work_dir=self.work_dir,
            epochs_done=int(state.epoch.numpy()),
            stopped=stopped,
            best=best_record,
            seconds=round(time.monotonic() - started, 1),
            tokens_per_second=round(tokens_per_second, 1),
        )
        card = model_card(
            report,
            self.data,
            command=self.options.command,
            strategy=self.options.strategy,
            replicas=self.strategy.num_replicas_in_sync,
            precision=self.precision,
            init_from=self.options.init_from,
        )
        try:
            Bundle(
                self.config,
                self.data.tokenizer,
                model,
                history,
                card,
                token_nidf,
                self._reply_bank(),
            ).save(self.out_dir, overwrite=True)
        except DiskFullError as error:
            message = f"{error}; the run's checkpoints are intact: {RESUME_HINT} to write it"
            raise DiskFullError(error.errno, message, error.filename) from error
        return report

    def _reply_bank(self) -> ReplyBank | None:
        """The training split's reply bank, for a model that answers messages (a backward
        model, trained to predict messages from replies, has no use for one)."""
        if self.config.data.direction != "forward":
            return None
        return build_bank(self.data.examples("train"), self.data.examples("valid"))


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, options: TrainOptions | None = None
) -> TrainReport:
    """Train a model on a prepared data directory and write its bundle to `out_dir`."""
    return Trainer(config, data_dir, out_dir, options or TrainOptions()).run()
