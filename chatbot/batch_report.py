"""A look at the batches a prepared directory makes, so data problems show before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from chatbot.errors import DataError
from chatbot.pipeline import make_dataset, read_shards
from chatbot.prepare import PreparedData, Split
from chatbot.tokenizer import Tokenizer, split_context


def _turns(ids: np.ndarray, tokenizer: Tokenizer) -> list[str]:
    """The context turns in a padded source row."""
    return [tokenizer.decode(turn) for turn in split_context(ids.tolist())]


def describe_batches(
    data_dir: str | Path, split: Split, batch_size: int, max_batches: int | None = None
) -> str:
    """Batch count, shapes, the share of padding, and the first example decoded back to text."""
    data = PreparedData.load(data_dir)
    shards = data.shards(split)
    examples = sum(shard.examples for shard in shards)
    if not examples:
        raise DataError(f"{data.path}: no examples in the {split} split")
    config = data.config
    dataset = make_dataset(
        read_shards([shard.path for shard in shards], shuffle=True, seed=config.seed),
        batch_size=batch_size,
        max_source_len=config.max_source_len,
        max_target_len=config.max_target_len,
        seed=config.seed,
    )
    if max_batches is not None:
        dataset = dataset.take(max_batches)
    batches = rows = real = padded = 0
    first = None
    shapes: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for inputs, targets, weights in dataset.as_numpy_iterator():
        if first is None:
            first = (inputs["source_ids"][0], targets[0])
        source = inputs["source_ids"]
        shapes.add((source.shape, targets.shape))
        batches += 1
        rows += len(targets)
        real += int(np.count_nonzero(source)) + int(weights.sum())
        padded += source.size + targets.size
    if first is None:
        raise DataError(f"no batches to show (batch size {batch_size}, batches {max_batches})")
    source_row, target_row = first
    lines = [
        f"{data.path} [{split}]: {examples:,} examples -> {batches:,} batches "
        f"of up to {batch_size} ({rows:,} rows)",
        f"  distinct (source, target) batch shapes: {len(shapes)}; "
        f"padding: {1 - real / padded:.1%} of tokens",
        "  first example of the first batch:",
        *(f"    context: {turn}" for turn in _turns(source_row[source_row != 0], data.tokenizer)),
        f"    target:  {data.tokenizer.decode(target_row)}",
        f"    source ids: {source_row.tolist()}",
        f"    target ids: {target_row.tolist()}",
    ]
    return "\n".join(lines)
