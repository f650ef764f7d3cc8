from collections import Counter

import numpy as np
import pytest
import tensorflow as tf

from chatbot.examples import EncodedExamples, Example, encode_examples
from chatbot.pipeline import (
    batches_per_epoch,
    bucket_boundaries,
    make_dataset,
    read_shards,
    shift_negatives,
    truncate_and_shift,
)
from chatbot.shards import example_record
from chatbot.tokenizer import BOS_ID, EOS_ID, PAD_ID, SEP_ID


def _batches(dataset):
    return list(dataset.as_numpy_iterator())


def _ids(n: int, start: int = 10) -> tf.Tensor:
    return tf.range(start, start + n, dtype=tf.int32)


def test_encode_joins_context_turns_with_separator(tiny_tokenizer):
    encoded = encode_examples([Example(("Hello", "how are you"), "fine")], tiny_tokenizer)
    hello, how, fine = tiny_tokenizer.encode(["Hello", "how are you", "fine"])
    assert encoded.sources[0].tolist() == [*hello, SEP_ID, *how, EOS_ID]
    assert encoded.targets[0].tolist() == fine


def test_truncation_keeps_the_newest_tokens_of_the_source():
    source = tf.constant([11, 12, SEP_ID, 21, 22, 23, EOS_ID], tf.int32)
    kept, _, _ = truncate_and_shift(source, _ids(2), max_source_len=4, max_target_len=8)
    assert kept.numpy().tolist() == [21, 22, 23, EOS_ID]


def test_short_target_gets_eos_and_decoder_input_is_shifted():
    _, decoder_input, target = truncate_and_shift(_ids(3), _ids(3, 50), 8, max_target_len=4)
    assert target.numpy().tolist() == [50, 51, 52, EOS_ID]
    assert decoder_input.numpy().tolist() == [BOS_ID, 50, 51, 52]


def test_too_long_target_is_cut_without_eos():
    _, decoder_input, target = truncate_and_shift(_ids(3), _ids(6, 50), 8, max_target_len=4)
    assert target.numpy().tolist() == [50, 51, 52, 53]
    assert decoder_input.numpy().tolist() == [BOS_ID, 50, 51, 52]


def test_hard_negatives_are_cut_and_shifted_as_targets_are():
    replies = [[50, 51], [60, 61, 62, 63, 64, 65], [70, 71, 72]]
    negatives = tf.ragged.constant(replies, dtype=tf.int32)
    decoder_inputs, targets = shift_negatives(negatives, max_target_len=4)
    for reply, decoder_input, target in zip(replies, decoder_inputs, targets, strict=True):
        _, expected_input, expected = truncate_and_shift(_ids(2), tf.constant(reply), 8, 4)
        width = len(expected.numpy())
        assert target.numpy().tolist() == expected.numpy().tolist() + [PAD_ID] * (4 - width)
        assert decoder_input.numpy().tolist()[:width] == expected_input.numpy().tolist()
        assert set(decoder_input.numpy().tolist()[width:]) <= {PAD_ID}
    assert targets.shape == (3, 4)


def test_batches_carry_each_examples_hard_negatives(tmp_path):
    path = tmp_path / "train.tfrecord"
    with path.open("wb") as file:
        for i in range(12):  # a reply whose first id names its example, negatives too
            file.write(example_record([i, 3], [100 + i] * (1 + i % 3), [[200 + i], [300 + i] * 5]))
    examples = read_shards([path], shuffle=True, seed=1, negatives=True)
    seen = 0
    for inputs, targets, _ in _batches(
        make_dataset(examples, batch_size=4, max_source_len=8, max_target_len=4, seed=1)
    ):
        rows = targets.shape[0]
        assert inputs["negative_targets"].shape == (rows, 2, 4)
        for row in range(rows):
            i = int(targets[row, 0]) - 100
            assert inputs["negative_targets"][row].tolist() == [
                [200 + i, EOS_ID, PAD_ID, PAD_ID],
                [300 + i] * 4,
            ]
            assert inputs["negative_decoder_input_ids"][row].tolist() == [
                [BOS_ID, 200 + i, PAD_ID, PAD_ID],
                [BOS_ID] + [300 + i] * 3,
            ]
            seen += 1
    assert seen == 12


def test_source_side_negatives_are_cut_from_the_left_as_sources_are(tmp_path):
    path = tmp_path / "train.tfrecord"
    with path.open("wb") as file:
        for i in range(8):  # a reply whose first id names its example, negatives too
            file.write(example_record([i, 3], [100 + i], [[200 + i], list(range(300, 310))]))
    examples = read_shards([path], shuffle=True, seed=1, negatives=True)
    dataset = make_dataset(
        examples, batch_size=4, max_source_len=4, max_target_len=4, negative_side="source"
    )
    seen = 0
    for inputs, targets, _ in _batches(dataset):
        assert "negative_targets" not in inputs
        for row in range(targets.shape[0]):
            i = int(targets[row, 0]) - 100
            assert inputs["negative_source_ids"][row].tolist() == [
                [200 + i, PAD_ID, PAD_ID, PAD_ID],
                [306, 307, 308, 309],
            ]
            seen += 1
    assert seen == 8


def test_bucket_boundaries():
    assert bucket_boundaries(32, 8) == [9, 17, 25]
    assert bucket_boundaries(10, 8) == [9]
    assert bucket_boundaries(4, 8) == []


def _encoded(lengths, tiny_tokenizer):
    words = [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
    ]
    examples = [Example((" ".join(words[:n]),), " ".join(words[: max(1, n // 2)])) for n in lengths]
    return encode_examples(examples, tiny_tokenizer)


def _elements(encoded: EncodedExamples) -> tf.data.Dataset:
    """(source, target) id vectors, as `chatbot.pipeline.read_shards` yields them."""
    return tf.data.Dataset.from_generator(
        lambda: zip(encoded.sources, encoded.targets, strict=True),
        output_signature=(tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32)),
    )


def test_batches_have_padding_masks_and_all_examples(tiny_tokenizer):
    encoded = _encoded([1, 2, 3, 12, 11, 10, 2, 1, 12, 3], tiny_tokenizer)
    batches = _batches(
        make_dataset(
            _elements(encoded), batch_size=4, max_source_len=64, max_target_len=64, bucket_width=8
        )
    )
    assert sum(len(t) for _, t, _ in batches) == len(encoded)
    for inputs, targets, weights in batches:
        source, decoder_input = inputs["source_ids"], inputs["decoder_input_ids"]
        assert source.dtype == np.int32 and targets.dtype == np.int32
        assert decoder_input.shape == targets.shape == weights.shape
        np.testing.assert_array_equal(weights, (targets != PAD_ID).astype(np.float32))
        assert (decoder_input[:, 0] == BOS_ID).all()
        real = targets != PAD_ID
        np.testing.assert_array_equal(
            decoder_input[:, 1:][real[:, 1:]], targets[:, :-1][real[:, 1:]]
        )
        for row in source:
            length = np.count_nonzero(row)
            assert (row[:length] != PAD_ID).all() and (row[length:] == PAD_ID).all()
            assert row[length - 1] == EOS_ID


def test_bucketing_groups_similar_lengths(tiny_tokenizer):
    short_and_long = [1] * 16 + [12] * 16
    encoded = _encoded(short_and_long, tiny_tokenizer)
    batches = _batches(
        make_dataset(
            _elements(encoded), batch_size=8, max_source_len=64, max_target_len=64, bucket_width=8
        )
    )
    widths = sorted(inputs["source_ids"].shape[1] for inputs, _, _ in batches)
    # each batch holds only short or only long examples, so it is padded to its own length
    short = max(len(s) for s in encoded.sources[:16])
    assert widths[:2] == [short, short]
    assert widths[-1] == max(len(s) for s in encoded.sources[16:])
    assert len(batches) == 4


def test_max_lengths_bound_the_batch_shapes(tiny_tokenizer):
    encoded = _encoded([12] * 8, tiny_tokenizer)
    for inputs, targets, _ in _batches(
        make_dataset(_elements(encoded), batch_size=4, max_source_len=5, max_target_len=3)
    ):
        assert inputs["source_ids"].shape[1] <= 5
        assert targets.shape[1] <= 3


def test_same_seed_same_batches_different_seed_different_order(tiny_tokenizer):
    encoded = _encoded(list(range(1, 13)) * 4, tiny_tokenizer)

    def order(seed):
        dataset = make_dataset(
            _elements(encoded), batch_size=4, max_source_len=64, max_target_len=64, seed=seed
        )
        return [inputs["source_ids"].tolist() for inputs, _, _ in _batches(dataset)]

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_unshuffled_dataset_keeps_every_example_once(tiny_tokenizer):
    encoded = _encoded([1, 5, 9, 12], tiny_tokenizer)
    batches = _batches(
        make_dataset(
            _elements(encoded), batch_size=1, max_source_len=64, max_target_len=64, shuffle=False
        )
    )
    seen = sorted(tuple(inputs["source_ids"][0]) for inputs, _, _ in batches)
    assert seen == sorted(tuple(s) for s in encoded.sources)


@pytest.mark.parametrize(("batch_size", "max_len"), [(1, 64), (3, 64), (4, 6), (7, 3)])
def test_batches_per_epoch_matches_the_dataset(tiny_tokenizer, batch_size, max_len):
    encoded = _encoded([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] * 3, tiny_tokenizer)
    kwargs = dict(batch_size=batch_size, max_source_len=max_len, max_target_len=max_len)
    expected = len(_batches(make_dataset(_elements(encoded), bucket_width=4, **kwargs)))
    pairs = zip(encoded.sources, encoded.targets, strict=True)
    lengths = Counter((len(source), len(target) + 1) for source, target in pairs)
    assert batches_per_epoch(lengths, bucket_width=4, **kwargs) == expected
