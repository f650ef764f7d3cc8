"""The training loops: Keras' `fit` and `evaluate`, or, under `multi_worker`, the trainer's own
step loop; and the distributed datasets they read.

Keras 3's `fit` cannot drive several workers (it all-reduces the first batch and reduces scalar
logs along axis 0: keras-team/keras#20329, tensorflow#72388), so there the loop runs the
model's `train_step` itself, averages the logs over every replica, and every worker stops
together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from chatbot.config import DistributionStrategy, TrainingConfig
from chatbot.errors import DataError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.pipeline import batches_per_epoch, make_dataset, read_shards
from chatbot.shards import Shard, total_lengths

log = logging.getLogger(__name__)


def make_strategy(name: DistributionStrategy) -> tf.distribute.Strategy:
    """`multi_worker` reads the cluster from the TF_CONFIG environment variable."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


class Loops:
    """Epochs and validation passes of one model under one `tf.distribute` strategy."""

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        training: TrainingConfig,
        *,
        multi_worker: bool,
        max_source_len: int | None,
        max_target_len: int | None,
    ) -> None:
        self.strategy = strategy
        self.training = training
        self.multi_worker = multi_worker
        self.max_source_len = max_source_len
        self.max_target_len = max_target_len
        self._replicated_steps: dict[Any, Callable[[Any], Any]] = {}

    def input_pipelines(self) -> int:
        """One input pipeline per worker process."""
        resolver = getattr(self.strategy, "cluster_resolver", None)
        if resolver is None:
            return 1
        spec = resolver.cluster_spec().as_dict()
        return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))

    def distributed(
        self,
        shards: list[Shard],
        *,
        shuffle: bool,
        seed: int,
        skip: int = 0,
        negatives: bool = False,
    ) -> tuple[Any, int]:
        """(distributed dataset, global steps): every input pipeline (one a worker) reads its
        own shard files, every `pipelines`-th from its index, and yields the same number of
        batches, so no replica waits for another forever. `negatives`: the shards hold mined
        hard negatives, and the batches carry them."""
        pipelines = self.input_pipelines()
        if len(shards) < pipelines:
            raise DataError(
                f"{len(shards)} shard file(s) for {pipelines} workers, each of which reads its "
                "own: prepare the data again with --shards of at least the number of workers"
            )
        replicas = self.strategy.num_replicas_in_sync
        lengths = dict(
            batch_size=max(1, self.training.batch_size // replicas),
            max_source_len=self.max_source_len,
            max_target_len=self.max_target_len,
            bucket_width=self.training.bucket_width,
        )
        replicas_per_pipeline = max(1, replicas // pipelines)
        batches = min(
            batches_per_epoch(total_lengths(shards[i::pipelines]), **lengths)
            for i in range(pipelines)
        )
        steps = batches // replicas_per_pipeline

        def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
            mine = shards[context.input_pipeline_id :: context.num_input_pipelines]
            log.info(
                "input pipeline %d of %d reads %s",
                context.input_pipeline_id + 1,
                context.num_input_pipelines,
                " ".join(shard.path.name for shard in mine),
            )
            examples = read_shards(
                [shard.path for shard in mine], shuffle=shuffle, seed=seed, negatives=negatives
            )
            dataset = make_dataset(
                examples,
                shuffle=shuffle,
                seed=seed,
                negative_side=self.training.contrastive_side,
                **lengths,
            )
            dataset = dataset.take(steps * replicas_per_pipeline)
            return dataset.skip(skip * replicas_per_pipeline)

        return self.strategy.distribute_datasets_from_function(dataset_fn), steps

    def fit(
        self,
        model: Seq2Seq,
        dataset: Any,
        epoch: int,
        steps: int,
        callbacks: list[keras.callbacks.Callback],
    ) -> tuple[dict[str, list[float]], bool]:
        """Train `steps` batches of `epoch`: (the history `fit` returns, whether a callback
        stopped training)."""
        if not self.multi_worker:
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
        return self._step_loop(model, dataset, steps, callbacks)

    def _step_loop(
        self,
        model: Seq2Seq,
        dataset: Any,
        steps: int,
        callbacks: list[keras.callbacks.Callback],
    ) -> tuple[dict[str, list[float]], bool]:
        """`fit` for several workers: the same callbacks, around the replicated train step."""
        train_step = self._replicated(model.train_step)
        hooks = keras.callbacks.CallbackList(callbacks, model=model)
        model.reset_metrics()
        model.stop_training = False
        hooks.on_train_begin()
        iterator = iter(dataset)
        logs: dict[str, Any] = {}
        for batch in range(steps):
            hooks.on_train_batch_begin(batch)
            logs = train_step(iterator)
            hooks.on_train_batch_end(batch, logs)
            model.stop_training = self._on_any_worker(model.stop_training)
            if model.stop_training:
                break
        hooks.on_train_end(logs)
        return {key: [float(value)] for key, value in logs.items()}, model.stop_training

    def validate(self, model: Seq2Seq, shards: list[Shard]) -> dict[str, float]:
        """Validation loss and perplexity over the examples in `shards` (none without any)."""
        if not sum(shard.examples for shard in shards):
            return {}
        dataset, steps = self.distributed(shards, shuffle=False, seed=0)
        if not steps:
            return {}
        if self.multi_worker:
            test_step = self._replicated(model.test_step)
            model.reset_metrics()
            iterator = iter(dataset)
            for _ in range(steps):
                results = test_step(iterator)
        else:
            results = model.evaluate(dataset, steps=steps, verbose=0, return_dict=True)
        return {"val_loss": float(results["loss"]), "val_perplexity": float(results["perplexity"])}

    def _replicated(self, step: Callable[[Any], dict[str, Any]]) -> Callable[[Any], Any]:
        """A compiled step that runs `step` on every replica's next batch and averages its
        scalar outputs over all replicas, so that every worker sees the same logs; compiled
        once per step function."""
        if step in self._replicated_steps:
            return self._replicated_steps[step]
        strategy = self.strategy

        @tf.function
        def replicated(iterator: Any) -> dict[str, tf.Tensor]:
            outputs = strategy.run(step, args=(next(iterator),))
            return {
                key: strategy.reduce("MEAN", value, axis=None) for key, value in outputs.items()
            }

        self._replicated_steps[step] = replicated
        return replicated

    def _on_any_worker(self, flag: bool) -> bool:
        """Whether `flag` is set on any worker; a collective, so every worker must ask alike."""
        return bool(self.strategy.reduce("SUM", tf.constant(float(flag)), axis=None) > 0)
