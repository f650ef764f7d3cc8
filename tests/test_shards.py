"""TFRecord shards of token ids: what prepare writes is what training reads, and the length
histograms give exact statistics and batch counts."""

from collections import Counter

import numpy as np
import pytest

from chatbot.pipeline import read_shards
from chatbot.shards import (
    Shard,
    ShardWriter,
    percentiles,
    target_frequencies,
    target_ids,
    total_lengths,
)


def test_written_examples_read_back_dealt_over_the_files(tmp_path):
    writer = ShardWriter(tmp_path, "train", 3)
    examples = [([5, 6, i, 3], [7] * (i % 4 + 1)) for i in range(10)]
    for source, target in examples:
        writer.write(source, target)
    shards = writer.close()

    assert [s.path.name for s in shards] == [f"train-0000{i}-of-00003.tfrecord" for i in range(3)]
    assert [s.examples for s in shards] == [4, 3, 3]
    assert total_lengths(shards) == Counter((4, len(t) + 1) for _, t in examples)
    read = read_shards([s.path for s in shards], shuffle=False, seed=0)
    got = sorted((tuple(s.tolist()), tuple(t.tolist())) for s, t in read.as_numpy_iterator())
    assert got == sorted((tuple(s), tuple(t)) for s, t in examples)
    first = next(read_shards([shards[1].path], shuffle=False, seed=0).as_numpy_iterator())
    assert first[0].dtype == np.int32 and first[0].tolist() == [5, 6, 1, 3]


def test_shuffled_file_order_is_seeded(tmp_path):
    writer = ShardWriter(tmp_path, "train", 8)
    for i in range(64):
        writer.write([i, 3], [i])
    paths = [s.path for s in writer.close()]

    def order(seed):
        dataset = read_shards(paths, shuffle=True, seed=seed)
        return [int(s[0]) for s, _ in dataset.as_numpy_iterator()]

    assert order(1) == order(1) and sorted(order(1)) == list(range(64))
    assert order(1) != order(2)


def test_target_counts_give_each_ids_reply_frequency_through_the_manifest(tmp_path):
    writer = ShardWriter(tmp_path, "train", 2)
    targets = [[4, 4, 5], [5, 6], [], [4], [6, 6, 6]]
    for target in targets:
        writer.write([9, 3], target)
    shards = [Shard.from_json(s.to_json(tmp_path), tmp_path, where="m") for s in writer.close()]

    expected = np.zeros(8, np.int64)
    for target in targets:  # brute force: one count per distinct id of each reply
        for token in set(target):
            expected[token] += 1
    np.testing.assert_array_equal(target_frequencies(shards, 8), expected)
    assert target_ids(shards).tolist() == [3, 4, 5, 6]  # the end mark is always a target


@pytest.mark.parametrize("seed", range(5))
def test_percentiles_from_counts_equal_numpys(seed):
    values = np.random.default_rng(seed).integers(1, 60, size=int(seed * 37 + 1))
    points = (0, 1, 50, 90, 95, 99, 100)
    expected = {p: int(np.percentile(values, p)) for p in points}
    assert percentiles(Counter(values.tolist()), points) == expected
