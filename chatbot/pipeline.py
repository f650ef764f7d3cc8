"""The input pipeline: examples -> token ids -> shuffled, length-bucketed, padded batches.

Text is encoded once, by `chatbot prepare`, with SentencePiece's batched C++ encoder, and stored
as TFRecord shards (`chatbot.shards`); everything after that (reading them with `read_shards`,
shuffling, truncation, the teacher-forcing shift, bucketing, padding, masks) runs inside
`tf.data`, so the maximum lengths can change at training time without re-preparing the data.

A batch is `(inputs, targets, weights)` as `keras.Model.fit` expects:
- `inputs["source_ids"]`: int32 [batch, src_len], padded with PAD_ID (0); the context turns
  joined by SEP_ID and ended by EOS_ID, truncated from the left so the newest turn survives.
- `inputs["decoder_input_ids"]`: int32 [batch, tgt_len], BOS_ID then the target shifted right.
- `targets`: int32 [batch, tgt_len], the response ids ended by EOS_ID; a response too long for
  `max_target_len` is cut and gets no EOS, so the model never learns to stop mid-sentence.
- `weights`: float32 [batch, tgt_len], 1 on real target tokens and 0 on padding (the loss mask).
- with hard negatives (`training.contrastive_hard_negatives`), also
  `inputs["negative_decoder_input_ids"]` and `inputs["negative_targets"]`: int32
  [batch, count, longest], each negative reply shifted and cut as a target is; or, for
  negatives on the source side (`training.contrastive_side`), `inputs["negative_source_ids"]`:
  int32 [batch, count, longest], each negative context truncated from the left as a source is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import tensorflow as tf

from chatbot.shards import Lengths
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID

_FEATURES = {
    "source": tf.io.RaggedFeature(tf.int64),
    "target": tf.io.RaggedFeature(tf.int64),
}
_NEGATIVES = tf.io.RaggedFeature(
    tf.int64,
    value_key="negatives",
    partitions=[tf.io.RaggedFeature.RowLengths("negative_lengths")],
)


def read_shards(
    paths: Sequence[Path], *, shuffle: bool, seed: int, negatives: bool = False
) -> tf.data.Dataset:
    """(source, target) int32 id vectors of every example in `paths`: the files in a seeded
    order (when `shuffle`), read a few at a time and interleaved record by record, so memory
    does not grow with the data; the same seed gives the same order. With `negatives`, a third
    element: the example's hard negatives (`chatbot.training.negatives`), int32 ragged
    [count, None]."""
    files = tf.data.Dataset.from_tensor_slices([str(path) for path in paths])
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=False)
    records = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(len(paths), 8)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    parse = _parse_with_negatives if negatives else _parse
    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _parse(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    example = tf.io.parse_single_example(record, _FEATURES)
    return tf.cast(example["source"], tf.int32), tf.cast(example["target"], tf.int32)


def _parse_with_negatives(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.RaggedTensor]:
    example = tf.io.parse_single_example(record, {**_FEATURES, "negatives": _NEGATIVES})
    return (
        tf.cast(example["source"], tf.int32),
        tf.cast(example["target"], tf.int32),
        tf.cast(example["negatives"], tf.int32),
    )


def bucket_boundaries(max_len: int, width: int) -> list[int]:
    """Upper length bounds (exclusive) of the buckets: width+1, 2*width+1, ... below max_len."""
    return list(range(width + 1, max_len + 1, width))


def batches_per_epoch(
    lengths: Lengths,
    *,
    batch_size: int,
    max_source_len: int,
    max_target_len: int,
    bucket_width: int = 8,
) -> int:
    """How many batches `make_dataset` yields per epoch over examples of these (source,
    target + 1) `lengths`: each length bucket ends in one partial batch, whatever the shuffle
    order, so the count is fixed by the lengths."""
    boundaries = bucket_boundaries(max(max_source_len, max_target_len), bucket_width)
    per_bucket: Counter[int] = Counter()
    for (source, target), count in lengths.items():
        longest = max(min(source, max_source_len), min(target, max_target_len))
        per_bucket[int(np.searchsorted(boundaries, longest, side="right"))] += count
    return sum(-(-count // batch_size) for count in per_bucket.values())


def truncate_and_shift(
    source: tf.Tensor, response: tf.Tensor, max_source_len: int, max_target_len: int
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Graph ops for one example: left-truncated source, decoder input and target."""
    source = source[-max_source_len:]
    fits = tf.shape(response)[0] < max_target_len
    target = tf.cond(
        fits,
        lambda: tf.concat([response, [EOS_ID]], axis=0),
        lambda: response[:max_target_len],
    )
    decoder_input = tf.concat([[BOS_ID], target[:-1]], axis=0)
    return source, decoder_input, target


def shift_negatives(negatives: tf.RaggedTensor, max_target_len: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(decoder inputs, targets), int32 [count, longest] padded with PAD_ID, of an example's
    hard negatives: each one truncated and shifted as `truncate_and_shift` does a target."""
    fits = negatives.row_lengths() < max_target_len
    index = negatives.row_splits.dtype
    ends = tf.RaggedTensor.from_row_lengths(
        tf.fill([tf.reduce_sum(tf.cast(fits, tf.int32))], EOS_ID), tf.cast(fits, index)
    )
    targets = tf.concat([negatives[:, :max_target_len], ends], axis=1)
    starts = tf.RaggedTensor.from_row_lengths(
        tf.fill([targets.nrows()], BOS_ID), tf.ones([targets.nrows()], index)
    )
    decoder_inputs = tf.concat([starts, targets[:, :-1]], axis=1)
    return decoder_inputs.to_tensor(PAD_ID), targets.to_tensor(PAD_ID)


def make_dataset(
    examples: tf.data.Dataset,
    *,
    batch_size: int,
    max_source_len: int,
    max_target_len: int,
    shuffle: bool = True,
    seed: int = 0,
    bucket_width: int = 8,
    shuffle_buffer: int = 100_000,
    negative_side: Literal["target", "source"] = "target",
) -> tf.data.Dataset:
    """Batches of `examples`, (source, target) id vectors such as `read_shards` yields, as
    the module docstring describes; shuffled in a buffer of `shuffle_buffer` examples, so
    memory does not grow with the data. Same seed, same batches, in order. Examples read with
    their hard negatives also give `inputs["negative_decoder_input_ids"]` and
    `inputs["negative_targets"]`, or with `negative_side="source"`
    `inputs["negative_source_ids"]`, int32 [batch, count, longest]."""
    dataset = examples
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def shift(source: tf.Tensor, response: tf.Tensor, *negatives: tf.RaggedTensor) -> tuple:
        shifted = truncate_and_shift(source, response, max_source_len, max_target_len)
        if not negatives:
            return shifted
        if negative_side == "source":
            named = {"negative_source_ids": negatives[0][:, -max_source_len:].to_tensor(PAD_ID)}
        else:
            decoder_inputs, targets = shift_negatives(negatives[0], max_target_len)
            named = {"negative_decoder_input_ids": decoder_inputs, "negative_targets": targets}
        return (*shifted, named)

    dataset = dataset.map(shift, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    boundaries = bucket_boundaries(max(max_source_len, max_target_len), bucket_width)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda source, decoder_input, target, *negatives: tf.maximum(
            tf.shape(source)[0], tf.shape(target)[0]
        ),
        bucket_boundaries=boundaries,
        bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
        padding_values=PAD_ID,
    )
    dataset = dataset.map(_to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def _to_model_inputs(
    source: tf.Tensor,
    decoder_input: tf.Tensor,
    target: tf.Tensor,
    negatives: dict[str, tf.Tensor] | None = None,
) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    """(inputs by the model's input names, targets, per-token weights): `negatives` are the
    named negative inputs `make_dataset`'s shift gave, when the examples have any."""
    weights = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
    inputs = {"source_ids": source, "decoder_input_ids": decoder_input, **(negatives or {})}
    return inputs, target, weights
