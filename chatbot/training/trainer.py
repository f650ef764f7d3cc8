"""`chatbot train`: a prepared data directory in, a model bundle out, resumable at any moment.

The run keeps its state in a work directory beside the bundle (`MODEL_DIR.work/` unless told
otherwise): the config it runs, TensorFlow checkpoints (model, optimizer, step, position in the
epoch, early-stopping state and history, all in one atomically committed checkpoint), the best
checkpoint so far, and TensorBoard logs. `model.fit` drives each epoch (one call per epoch, so a
resumed run can start mid-epoch; under `multi_worker` the trainer's own loop does); between
epochs the trainer validates, keeps the best weights, lowers the learning rate on a plateau, and
stops early. The bundle is written at the end from the best weights, atomically.

A damaged checkpoint is skipped for the one before it, a run killed before its first checkpoint
resumes from the beginning, and a write that fails (a full disk) stops the run with an error
that names the folder, leaving the checkpoints and bundle already there intact.
"""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import keras
import tensorflow as tf
import yaml

from chatbot import __version__
from chatbot.atomic import DISK_FULL, DiskFullError, atomic_write_text
from chatbot.bundle import Bundle
from chatbot.config import Config, parse_config, read_yaml
from chatbot.errors import BundleError, ChatbotError, ConfigError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.pipeline import (
    EncodedExamples,
    batches_per_epoch,
    encode_examples,
    make_dataset,
    shard,
)
from chatbot.prepare import PreparedData
from chatbot.training.callbacks import Progress, StepCounter, Summaries, TimeBudget
from chatbot.training.optimizer import FusedAdam
from chatbot.training.schedules import learning_rate, teacher_forcing_probability

Strategy = Literal["default", "mirrored", "multi_worker"]
Precision = Literal["auto", "float32", "mixed_float16"]
# Training settings that may change when a run resumes; anything else must match, except the
# `decoding` section, which never affects training: a resumed run takes the given one.
RESUMABLE_CHANGES = {"epochs", "early_stopping_patience", "checkpoint_every_steps"}
# What restoring a damaged checkpoint raises (TensorFlow reports a bad file with all of these).
RESTORE_ERRORS = (tf.errors.OpError, AssertionError, ValueError, IndexError, KeyError)
RESUME_HINT = "free some space, then run again with --resume"


@dataclass
class TrainOptions:
    resume: bool = False
    force: bool = False
    max_minutes: float | None = None
    strategy: Strategy = "default"
    precision: Precision = "auto"
    work_dir: Path | None = None
    command: str = ""
    verbose: bool = True


@dataclass
class TrainReport:
    bundle: Path
    work_dir: Path
    epochs_done: int
    stopped: str  # "finished", "early_stopping" or "time_budget"
    best: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    tokens_per_second: float = 0.0


def make_strategy(name: Strategy) -> tf.distribute.Strategy:
    """`multi_worker` reads the cluster from the TF_CONFIG environment variable."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _config_differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix[:-1]} ({b!r} here, {a!r} in the run)"]


class _Run:
    """The state of one training run: everything a checkpoint restores."""

    def __init__(self, model: Seq2Seq, optimizer: keras.optimizers.Optimizer) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.bad_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.history = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            epoch=self.epoch,
            position=self.position,
            best_loss=self.best_loss,
            bad_epochs=self.bad_epochs,
            history=self.history,
        )

    def history_list(self) -> list[dict[str, Any]]:
        return json.loads(self.history.numpy().decode("utf-8"))

    def append_history(self, record: dict[str, Any]) -> None:
        self.history.assign(json.dumps([*self.history_list(), record]))


class Trainer:
    def __init__(
        self, config: Config, data_dir: str | Path, out_dir: str | Path, options: TrainOptions
    ):
        self.options = options
        self.out_dir = Path(out_dir)
        self.work_dir = options.work_dir or self.out_dir.with_name(self.out_dir.name + ".work")
        self.strategy = make_strategy(options.strategy)
        self.data = PreparedData.load(data_dir)
        self.config = self._settle_config(config.model_copy(update={"data": self.data.config}))
        training = self.config.training
        data_config = self.data.config
        self.max_source_len = training.max_source_len or data_config.max_source_len
        self.max_target_len = training.max_target_len or data_config.max_target_len

    # ---- setup --------------------------------------------------------------------------------

    def _settle_config(self, config: Config) -> Config:
        """The config this run uses: the given one for a new run, the saved one on resume."""
        saved = self.work_dir / "config.yaml"
        if self.options.resume:
            if not saved.is_file():
                raise BundleError(f"{self.work_dir}: nothing to resume (no config.yaml there)")
            previous = parse_config(Config, read_yaml(saved), where=str(saved))
            given, kept = config.model_dump(mode="json"), previous.model_dump(mode="json")
            for key in RESUMABLE_CHANGES:
                kept["training"][key] = given["training"][key]
            kept["decoding"] = given["decoding"]
            differences = _config_differences(kept, given)
            if differences:
                raise ConfigError(
                    f"--resume continues the run in {self.work_dir} with its saved config; "
                    f"these settings differ: {'; '.join(differences)}"
                )
            return parse_config(Config, kept)
        if self._checkpoint_dir().exists() and not self.options.force:
            raise ConfigError(
                f"{self.work_dir} holds an earlier run: pass --resume to continue it or "
                "--force to start over"
            )
        if self._is_chief and self.work_dir.exists():
            shutil.rmtree(self.work_dir)
        elif not self._is_chief:  # only its own checkpoints: the work dir may be the chief's too
            shutil.rmtree(self._checkpoint_dir(), ignore_errors=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self._is_chief:
            atomic_write_text(
                saved, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
            )
        return config

    @property
    def _is_chief(self) -> bool:
        """The task that owns the shared files: the `chief` task, or worker 0 when there is none."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None or not resolver.task_type:
            return True
        if resolver.task_type == "chief":
            return True
        has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
        return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief

    @property
    def _multi_worker(self) -> bool:
        return self.options.strategy == "multi_worker"

    def _checkpoint_dir(self) -> Path:
        """Non-chief workers save to their own throwaway folder, as tf.distribute requires."""
        if self._is_chief:
            return self.work_dir / "checkpoints"
        resolver = self.strategy.cluster_resolver
        return self.work_dir / f"worker-{resolver.task_type}-{resolver.task_id}"

    def _input_pipelines(self) -> int:
        """One input pipeline per worker process."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None:
            return 1
        spec = resolver.cluster_spec().as_dict()
        return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))

    def _precision(self) -> str:
        if self.options.precision != "auto":
            return self.options.precision
        return "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"

    def _build(self) -> tuple[Seq2Seq, _Run]:
        training = self.config.training
        keras.utils.set_random_seed(training.seed)
        with self.strategy.scope():
            model = Seq2Seq(self.config.model, self.data.tokenizer.vocab_size)
            model.build()
            optimizer = FusedAdam(
                learning_rate=learning_rate(training), global_clipnorm=training.clip_norm
            )
            if self._precision() == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            model.compile(optimizer=optimizer)
            model.configure_training(training.scheduled_sampling, training.label_smoothing)
            optimizer.build(model.trainable_variables)
        # Outside the scope: plain host variables that every worker computes alike, and that
        # MultiWorkerMirroredStrategy could not mirror (it broadcasts no strings).
        return model, _Run(model, optimizer)

    # ---- data ---------------------------------------------------------------------------------

    def _encoded(self, split: Literal["train", "valid"]) -> EncodedExamples:
        return encode_examples(self.data.examples(split), self.data.tokenizer)

    def _distributed(
        self, encoded: EncodedExamples, *, shuffle: bool, seed: int, skip: int = 0
    ) -> tuple[Any, int]:
        """(distributed dataset, global steps): every input pipeline gets its own share of the
        examples and the same number of batches, so no replica waits for another forever."""
        training = self.config.training
        pipelines = self._input_pipelines()
        replicas = self.strategy.num_replicas_in_sync
        per_replica = max(1, training.batch_size // replicas)
        lengths = dict(
            batch_size=per_replica,
            max_source_len=self.max_source_len,
            max_target_len=self.max_target_len,
            bucket_width=training.bucket_width,
        )
        replicas_per_pipeline = max(1, replicas // pipelines)
        batches = min(
            batches_per_epoch(shard(encoded, i, pipelines), **lengths) for i in range(pipelines)
        )
        steps = batches // replicas_per_pipeline

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            part = shard(encoded, context.input_pipeline_id, context.num_input_pipelines)
            dataset = make_dataset(part, shuffle=shuffle, seed=seed, **lengths)
            dataset = dataset.take(steps * replicas_per_pipeline)
            return dataset.skip(skip * replicas_per_pipeline)

        return self.strategy.distribute_datasets_from_function(dataset_fn), steps

    # ---- the run ------------------------------------------------------------------------------

    def run(self) -> TrainReport:
        started = time.monotonic()
        deadline = started + 60 * self.options.max_minutes if self.options.max_minutes else None
        previous_policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self._precision())
        try:
            return self._run(started, deadline)
        finally:
            keras.config.set_dtype_policy(previous_policy)

    def _run(self, started: float, deadline: float | None) -> TrainReport:
        training = self.config.training
        model, run = self._build()
        manager = _manager(run.checkpoint, self._checkpoint_dir(), training.keep_checkpoints)
        best = _manager(run.checkpoint, self._checkpoint_dir() / "best", 1)
        self._best_manager = best
        self._train_step = self._replicated(model.train_step)
        self._test_step = self._replicated(model.test_step)
        if self.options.resume:
            self._restore(run, manager)
        train_examples, valid_examples = self._encoded("train"), self._encoded("valid")
        summaries = Summaries(str(self.work_dir / "logs")) if self._is_chief else None
        budget = TimeBudget(deadline)
        stopped, tokens_per_second = "finished", 0.0
        save = functools.partial(self._save, manager)
        while int(run.epoch.numpy()) < training.epochs:
            epoch, position = int(run.epoch.numpy()), int(run.position.numpy())
            dataset, steps = self._distributed(
                train_examples, shuffle=True, seed=training.seed + epoch, skip=position
            )
            progress = Progress(epoch, training.epochs, steps, position)
            callbacks = [StepCounter(run.position, training.checkpoint_every_steps, save)]
            callbacks += [budget, progress] if self.options.verbose else [budget]
            epoch_started = time.monotonic()
            logs: dict[str, list[float]] = {}
            expired = False
            if position < steps:  # a run killed during its epoch-end work has no batches left
                logs, expired = self._fit(model, dataset, epoch, steps - position, callbacks)
            tokens_per_second = progress.tokens_per_second or tokens_per_second
            record = self._epoch_record(model, logs, epoch, time.monotonic() - epoch_started)
            record["train_tokens_per_s"] = round(progress.tokens_per_second, 1)
            if expired:
                record["partial"] = True
            record.update(self._validate(model, valid_examples))
            stop = self._end_epoch(model, run, record, summaries)
            if expired:
                self._save(manager)
                stopped = "time_budget"
                break
            run.epoch.assign_add(1)
            run.position.assign(0)
            self._save(manager)
            if stop:
                stopped = "early_stopping"
                break
        if self.options.verbose:
            print(f"training {stopped} after {int(run.epoch.numpy())} epoch(s)", file=sys.stderr)
        history = run.history_list()
        epochs_done = int(run.epoch.numpy())
        best_record = min(history, key=lambda r: r.get("val_loss", math.inf), default={})
        # keep-best: the bundle gets the best weights, or the last ones if those are damaged
        if best.latest_checkpoint and not self._restore_best(model, best.latest_checkpoint):
            best_record = history[-1] if history else {}
        report = TrainReport(
            bundle=self.out_dir,
            work_dir=self.work_dir,
            epochs_done=epochs_done,
            stopped=stopped,
            best=best_record,
            seconds=round(time.monotonic() - started, 1),
            tokens_per_second=round(tokens_per_second, 1),
        )
        bundle = Bundle(self.config, self.data.tokenizer, model, history, self._card(report))
        try:
            bundle.save(self.out_dir, overwrite=True)
        except DiskFullError as error:
            message = f"{error}; the run's checkpoints are intact: {RESUME_HINT} to write it"
            raise DiskFullError(error.errno, message, error.filename) from error
        return report

    def _save(self, manager: tf.train.CheckpointManager) -> None:
        """Save a checkpoint; a failed write is a `ChatbotError` naming the folder (TensorFlow
        writes only complete checkpoints, so the ones already there stay usable)."""
        try:
            manager.save()
        except (tf.errors.OpError, OSError) as error:
            raise _write_error(Path(manager.directory), error) from None

    def _restore_best(self, model: Seq2Seq, path: str) -> bool:
        """Load the best checkpoint's weights into `model`; False (weights unchanged) if it is
        damaged."""
        weights = model.get_weights()
        try:
            tf.train.Checkpoint(model=model).restore(path).expect_partial()
        except RESTORE_ERRORS as error:
            model.set_weights(weights)
            print(
                f"warning: best checkpoint {path} unusable ({_first_line(error)}); "
                "the bundle gets the last weights",
                file=sys.stderr,
            )
            return False
        return True

    def _fit(
        self,
        model: Seq2Seq,
        dataset: Any,
        epoch: int,
        steps: int,
        callbacks: list[keras.callbacks.Callback],
    ) -> tuple[dict[str, list[float]], bool]:
        """Train `steps` batches of `epoch`: (the history `fit` returns, whether a callback stopped
        training). Keras 3's `fit` cannot drive several workers (it all-reduces the first batch
        and reduces scalar logs along axis 0: keras-team/keras#20329, tensorflow#72388), so there
        the trainer runs the model's `train_step` itself, and every worker stops together."""
        if not self._multi_worker:
            history = model.fit(
                dataset,
                epochs=epoch + 1,
                initial_epoch=epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                shuffle=False,
                verbose=0,
            ).history
            return history, model.stop_training
        hooks = keras.callbacks.CallbackList(callbacks, model=model)
        model.reset_metrics()
        model.stop_training = False
        hooks.on_train_begin()
        iterator = iter(dataset)
        logs: dict[str, Any] = {}
        for batch in range(steps):
            hooks.on_train_batch_begin(batch)
            logs = self._train_step(iterator)
            hooks.on_train_batch_end(batch, logs)
            model.stop_training = self._on_any_worker(model.stop_training)
            if model.stop_training:
                break
        hooks.on_train_end(logs)
        return {key: [float(value)] for key, value in logs.items()}, model.stop_training

    def _replicated(self, step: Callable[[Any], dict[str, Any]]) -> Callable[[Any], Any]:
        """A compiled step that runs `step` on every replica's next batch and averages its
        scalar outputs over all replicas, so that every worker sees the same logs."""
        strategy = self.strategy

        @tf.function
        def replicated(iterator: Any) -> dict[str, tf.Tensor]:
            outputs = strategy.run(step, args=(next(iterator),))
            return {
                key: strategy.reduce("MEAN", value, axis=None) for key, value in outputs.items()
            }

        return replicated

    def _on_any_worker(self, flag: bool) -> bool:
        """Whether `flag` is set on any worker; a collective, so every worker must ask alike."""
        return bool(self.strategy.reduce("SUM", tf.constant(float(flag)), axis=None) > 0)

    def _restore(self, run: _Run, manager: tf.train.CheckpointManager) -> None:
        """Restore the newest checkpoint that loads; fall back to older ones if it is damaged.
        With none at all (the run stopped before its first), start from the beginning."""
        candidates = self._checkpoints(manager)
        if not candidates:
            print(
                f"warning: no checkpoint in {self._checkpoint_dir()} yet; starting the run "
                "from the beginning",
                file=sys.stderr,
            )
            return
        for path in candidates:
            try:
                run.checkpoint.restore(path).assert_existing_objects_matched()
            except RESTORE_ERRORS as error:
                print(
                    f"warning: checkpoint {path} unusable ({_first_line(error)}); "
                    "trying an older one",
                    file=sys.stderr,
                )
                continue
            if self.options.verbose:
                epoch, position = int(run.epoch.numpy()), int(run.position.numpy())
                print(f"resumed from {path}: epoch {epoch + 1}, batch {position}", file=sys.stderr)
            return
        names = ", ".join(Path(path).name for path in candidates)
        raise BundleError(
            f"{self._checkpoint_dir()}: no usable checkpoint to resume from ({names} damaged); "
            "pass --force instead of --resume to start over"
        )

    def _checkpoints(self, manager: tf.train.CheckpointManager) -> list[str]:
        """Checkpoint prefixes, newest first: the manager's, and any on disk that its state file
        does not list (the file is lost or damaged, or the run was killed before recording it);
        restoring skips a damaged one like any other."""
        found = {
            int(index.stem.split("-")[1]): str(index.with_suffix(""))
            for index in self._checkpoint_dir().glob("ckpt-*.index")
            if index.stem.split("-")[1].isdigit()
        }
        found.update((int(path.rsplit("-", 1)[1]), path) for path in manager.checkpoints)
        return [found[number] for number in sorted(found, reverse=True)]

    def _epoch_record(
        self, model: Seq2Seq, logs: dict[str, list[float]], epoch: int, seconds: float
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(seconds, 2)}
        for key in ("loss", "perplexity"):
            if logs.get(key):
                record[key] = float(logs[key][-1])
        step = model.optimizer.iterations
        record["step"] = int(step.numpy())
        record["learning_rate"] = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
        sampling = self.config.training.scheduled_sampling
        record["teacher_forcing"] = float(teacher_forcing_probability(sampling, step))
        return record

    def _validate(self, model: Seq2Seq, examples: EncodedExamples) -> dict[str, float]:
        if not len(examples):
            return {}
        dataset, steps = self._distributed(examples, shuffle=False, seed=0)
        if not steps:
            return {}
        if self._multi_worker:  # see `_fit`
            model.reset_metrics()
            iterator = iter(dataset)
            for _ in range(steps):
                results = self._test_step(iterator)
        else:
            results = model.evaluate(dataset, steps=steps, verbose=0, return_dict=True)
        return {"val_loss": float(results["loss"]), "val_perplexity": float(results["perplexity"])}

    def _end_epoch(
        self, model: Seq2Seq, run: _Run, record: dict[str, Any], summaries: Summaries | None
    ) -> bool:
        """Record the epoch, keep the best weights, adjust the learning rate; True = stop early."""
        training = self.config.training
        score = record.get("val_loss", record.get("loss", math.inf))
        improved = score < float(run.best_loss.numpy())
        if improved:
            run.best_loss.assign(score)
            run.bad_epochs.assign(0)
        else:
            run.bad_epochs.assign_add(1)
            bad = int(run.bad_epochs.numpy())
            if training.lr_schedule == "plateau" and bad % max(training.plateau_patience, 1) == 0:
                lr = model.optimizer.learning_rate
                lr.assign(lr * training.plateau_factor)
        run.append_history(record)
        if improved:
            self._save(self._best_manager)
        if summaries is not None:
            step = record["step"]
            train = {
                k: record.get(k)
                for k in (
                    "loss",
                    "perplexity",
                    "learning_rate",
                    "teacher_forcing",
                    "train_tokens_per_s",
                )
            }
            summaries.write("train", step, train)
            summaries.write(
                "valid",
                step,
                {"loss": record.get("val_loss"), "perplexity": record.get("val_perplexity")},
            )
        if self.options.verbose:
            shown = ", ".join(
                f"{k} {v:,.0f}" if abs(v) >= 1000 else f"{k} {v:.4g}"
                for k, v in record.items()
                if isinstance(v, float)
            )
            print(f"epoch {record['epoch']}: {shown}", file=sys.stderr)
        patience = training.early_stopping_patience
        return bool(patience) and int(run.bad_epochs.numpy()) >= patience

    def _card(self, report: TrainReport) -> dict[str, Any]:
        stats = self.data.stats()
        return {
            "chatbot_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": self.options.command,
            "data": {
                "path": str(self.data.path),
                "corpus": stats.get("corpus"),
                "splits": stats.get("splits"),
                "inputs": self.data.manifest.get("inputs"),
                "valid_inputs": self.data.manifest.get("valid_inputs"),
            },
            "training": {
                "epochs_done": report.epochs_done,
                "stopped": report.stopped,
                "seconds": report.seconds,
                "train_tokens_per_s": report.tokens_per_second,
                "strategy": self.options.strategy,
                "replicas": self.strategy.num_replicas_in_sync,
                "precision": self._precision(),
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


def _manager(
    checkpoint: tf.train.Checkpoint, directory: Path, keep: int
) -> tf.train.CheckpointManager:
    """A CheckpointManager over `directory`. TensorFlow skips a state file it cannot parse but
    fails on one that is not even text: that one is set aside (resuming finds the checkpoints
    on disk)."""
    try:
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)
    except UnicodeDecodeError:
        state = directory / "checkpoint"
        state.replace(state.with_name("checkpoint.damaged"))
        print(f"warning: {state} is damaged; set it aside as checkpoint.damaged", file=sys.stderr)
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep)


def _first_line(error: BaseException) -> str:
    """An error's message for one line, without TensorFlow's `{{function_node ...}}` and
    `[Op:...]` decorations."""
    text = str(getattr(error, "message", None) or error).strip()
    text = re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]$", "", text.splitlines()[0] if text else "")
    return text or type(error).__name__


def _write_error(directory: Path, error: BaseException) -> ChatbotError:
    """A failed checkpoint write as an error naming `directory`, saying so if the disk is full
    (TensorFlow reports that as a ResourceExhaustedError whose message is strerror's)."""
    reason = _first_line(error)
    if getattr(error, "errno", None) in DISK_FULL or os.strerror(errno.ENOSPC) in reason:
        return DiskFullError(
            errno.ENOSPC,
            f"{directory}: cannot save a checkpoint, the disk is full ({reason}); the "
            f"checkpoints already there are intact: {RESUME_HINT}",
            str(directory),
        )
    return BundleError(f"{directory}: cannot save a checkpoint: {reason}")


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, options: TrainOptions | None = None
) -> TrainReport:
    """Train a model on a prepared data directory and write its bundle to `out_dir`."""
    return Trainer(config, data_dir, out_dir, options or TrainOptions()).run()
