"""The input pipeline: examples -> token ids -> shuffled, length-bucketed, padded batches.

Text is encoded once with SentencePiece's batched C++ encoder; everything after that (shuffling,
truncation, the teacher-forcing shift, bucketing, padding, masks) runs inside `tf.data`, so the
maximum lengths can change at training time without re-preparing the data.

A batch is `(inputs, targets, weights)` as `keras.Model.fit` expects:
- `inputs["source_ids"]`: int32 [batch, src_len], padded with PAD_ID (0); the context turns
  joined by SEP_ID and ended by EOS_ID, truncated from the left so the newest turn survives.
- `inputs["decoder_input_ids"]`: int32 [batch, tgt_len], BOS_ID then the target shifted right.
- `targets`: int32 [batch, tgt_len], the response ids ended by EOS_ID; a response too long for
  `max_target_len` is cut and gets no EOS, so the model never learns to stop mid-sentence.
- `weights`: float32 [batch, tgt_len], 1 on real target tokens and 0 on padding (the loss mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from chatbot.examples import Example
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID, Tokenizer, join_context


@dataclass(frozen=True)
class EncodedExamples:
    """Untruncated ids: sources (context joined by SEP, ended by EOS) and bare responses."""

    sources: list[np.ndarray]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.sources)


def target_ids(examples: EncodedExamples) -> np.ndarray:
    """The distinct ids the model is trained to emit: every target's, and the end mark."""
    return np.unique(np.concatenate([*examples.targets, np.array([EOS_ID], np.int32)]))


def encode_examples(examples: Sequence[Example], tokenizer: Tokenizer) -> EncodedExamples:
    """Encode every distinct turn once, then assemble each example's ids."""
    texts = sorted({t for ex in examples for t in ex.context} | {ex.response for ex in examples})
    ids_of = dict(zip(texts, tokenizer.encode(texts), strict=True))
    sources = [
        np.asarray(join_context([ids_of[t] for t in ex.context]), np.int32) for ex in examples
    ]
    targets = [np.asarray(ids_of[ex.response], np.int32) for ex in examples]
    return EncodedExamples(sources, targets)


def _ragged(rows: list[np.ndarray]) -> tf.RaggedTensor:
    lengths = np.fromiter((len(row) for row in rows), np.int64, len(rows))
    values = np.concatenate(rows) if rows else np.zeros([0], np.int32)
    return tf.RaggedTensor.from_row_lengths(values, lengths)


def bucket_boundaries(max_len: int, width: int) -> list[int]:
    """Upper length bounds (exclusive) of the buckets: width+1, 2*width+1, ... below max_len."""
    return list(range(width + 1, max_len + 1, width))


def batches_per_epoch(
    encoded: EncodedExamples,
    *,
    batch_size: int,
    max_source_len: int,
    max_target_len: int,
    bucket_width: int = 8,
) -> int:
    """How many batches `make_dataset` yields per epoch: each length bucket ends in one partial
    batch, whatever the shuffle order, so the count is fixed by the example lengths."""
    if not len(encoded):
        return 0
    sources = np.minimum([len(s) for s in encoded.sources], max_source_len)
    targets = np.minimum([len(t) + 1 for t in encoded.targets], max_target_len)
    boundaries = bucket_boundaries(max(max_source_len, max_target_len), bucket_width)
    buckets = np.searchsorted(boundaries, np.maximum(sources, targets), side="right")
    return int(sum(-(-count // batch_size) for count in np.bincount(buckets) if count))


def shard(encoded: EncodedExamples, index: int, count: int) -> EncodedExamples:
    """Every `count`-th example from `index`: one input pipeline's share under tf.distribute."""
    return EncodedExamples(encoded.sources[index::count], encoded.targets[index::count])


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


def make_dataset(
    encoded: EncodedExamples,
    *,
    batch_size: int,
    max_source_len: int,
    max_target_len: int,
    shuffle: bool = True,
    seed: int = 0,
    bucket_width: int = 8,
    shuffle_buffer: int = 100_000,
) -> tf.data.Dataset:
    """Batches as described in the module docstring. Same seed, same batches, in order."""
    if len(encoded) == 0:
        raise ValueError("no examples to batch")
    dataset = tf.data.Dataset.from_tensor_slices(
        (_ragged(encoded.sources), _ragged(encoded.targets))
    )
    if shuffle:
        dataset = dataset.shuffle(
            min(shuffle_buffer, len(encoded)), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.map(
        lambda source, response: truncate_and_shift(
            source, response, max_source_len, max_target_len
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    boundaries = bucket_boundaries(max(max_source_len, max_target_len), bucket_width)
    dataset = dataset.bucket_by_sequence_length(
        element_length_func=lambda source, decoder_input, target: tf.maximum(
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
    source: tf.Tensor, decoder_input: tf.Tensor, target: tf.Tensor
) -> tuple[dict[str, tf.Tensor], tf.Tensor, tf.Tensor]:
    weights = tf.cast(tf.not_equal(target, PAD_ID), tf.float32)
    return {"source_ids": source, "decoder_input_ids": decoder_input}, target, weights
