"""Encoded examples on disk: TFRecord shard files of token ids, and their length histograms.

`chatbot prepare` writes each split as N shard files (`train-00003-of-00008.tfrecord`), one
`tf.train.Example` a record with the untruncated `source` ids (the context joined by SEP and
ended by EOS) and the bare `target` ids, examples dealt to the files in turn; the writer needs
no TensorFlow (`chatbot.tfrecord`), and training reads them with `chatbot.pipeline.read_shards`.
Each file's histogram of (source length, target length + 1) counts, kept in the manifest,
tells how many batches any set of files makes under any length limits without reading them
(`chatbot.pipeline.batches_per_epoch`), and gives the length percentiles in stats.json exactly,
in memory bounded by the distinct lengths rather than the corpus. Each file's count of the
targets that hold each id, kept there too, tells training which pieces no reply uses
(`target_ids`) and how specific each piece is (`target_frequencies`, for NIDF).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.errors import DataError
from chatbot.tfrecord import example_bytes, frame
from chatbot.tokenizer import EOS_ID

# (source length, target length + 1): the lengths `chatbot.pipeline` buckets and truncates
# (the +1 is the EOS a target gets), mapped to how many examples have them.
Lengths = Counter[tuple[int, int]]


@dataclass(frozen=True)
class Shard:
    """One TFRecord file of a split: where it is, how many examples it holds, their lengths
    and, for each id, how many of its targets hold it."""

    path: Path
    examples: int
    lengths: Lengths = field(compare=False)
    target_counts: Counter[int] = field(compare=False)

    def to_json(self, root: Path) -> dict[str, Any]:
        """The manifest's entry: the path relative to the prepared directory `root`."""
        return {
            "path": self.path.relative_to(root).as_posix(),
            "examples": self.examples,
            "lengths": [[s, t, n] for (s, t), n in sorted(self.lengths.items())],
            "target_counts": [[i, n] for i, n in sorted(self.target_counts.items())],
        }

    @classmethod
    def from_json(cls, entry: dict[str, Any], root: Path, *, where: str) -> Shard:
        try:
            lengths = Counter({(int(s), int(t)): int(n) for s, t, n in entry["lengths"]})
            counts = Counter({int(i): int(n) for i, n in entry["target_counts"]})
            return cls(root / entry["path"], int(entry["examples"]), lengths, counts)
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"{where}: not a shard entry ({error!r})") from None


def total_lengths(shards: Iterable[Shard]) -> Lengths:
    """The lengths of every example in `shards` together."""
    total: Lengths = Counter()
    for shard in shards:
        total.update(shard.lengths)
    return total


def target_ids(shards: Iterable[Shard]) -> np.ndarray:
    """The distinct ids the model is trained to emit from `shards`: every target's, and the
    end mark, sorted."""
    ids = {EOS_ID}.union(*(shard.target_counts for shard in shards))
    return np.array(sorted(ids), np.int32)


def target_frequencies(shards: Iterable[Shard], vocab_size: int) -> np.ndarray:
    """int64 [V]: how many targets in `shards` hold each id at least once (its document
    frequency over the replies, which `chatbot.decoding.specificity.nidf` takes)."""
    frequencies = np.zeros(vocab_size, np.int64)
    for shard in shards:
        for token, count in shard.target_counts.items():
            frequencies[token] += count
    return frequencies


def example_record(
    source: Sequence[int],
    target: Sequence[int],
    negatives: Sequence[Sequence[int]] | None = None,
) -> bytes:
    """One framed TFRecord: an example's source and target ids and, for the ranking loss's
    hard negatives (`chatbot.training.negatives`), other replies' ids, flattened with their
    lengths ("negatives", "negative_lengths")."""
    features = {"source": source, "target": target}
    if negatives is not None:
        features["negatives"] = [token for reply in negatives for token in reply]
        features["negative_lengths"] = [len(reply) for reply in negatives]
    return frame(example_bytes(features))


class ShardWriter:
    """Writes one split's examples to `count` shard files in `directory`, dealt in turn."""

    def __init__(self, directory: Path, split: str, count: int) -> None:
        self.paths = [directory / f"{split}-{i:05d}-of-{count:05d}.tfrecord" for i in range(count)]
        self._files = [path.open("wb") for path in self.paths]
        self._lengths: list[Lengths] = [Counter() for _ in self.paths]
        self._target_counts: list[Counter[int]] = [Counter() for _ in self.paths]
        self._written = 0

    def write(self, source: Sequence[int], target: Sequence[int]) -> None:
        """Append one example: untruncated source ids and bare target ids."""
        index = self._written % len(self._files)
        self._files[index].write(example_record(source, target))
        self._lengths[index][len(source), len(target) + 1] += 1
        self._target_counts[index].update(set(target))
        self._written += 1

    def close(self) -> list[Shard]:
        """Flush and close every file; the shards written, in file order."""
        for file in self._files:
            file.close()
        return [
            Shard(path, sum(lengths.values()), lengths, counts)
            for path, lengths, counts in zip(
                self.paths, self._lengths, self._target_counts, strict=True
            )
        ]


def percentiles(values: Counter[int], points: Sequence[int]) -> dict[int, int]:
    """`int(numpy.percentile(all values, p))` for each p, computed from the values' counts."""
    keys = np.array(sorted(values), dtype=np.int64)
    ends = np.cumsum([values[k] for k in keys])  # the rank after each key's last copy
    total = int(ends[-1])

    def at(rank: int) -> int:
        return int(keys[np.searchsorted(ends, rank, side="right")])

    result = {}
    for point in points:
        position = point / 100 * (total - 1)
        low, high = int(np.floor(position)), int(np.ceil(position))
        result[point] = int(at(low) + (at(high) - at(low)) * (position - low))
    return result
