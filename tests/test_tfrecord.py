"""The TensorFlow-free TFRecord writer: byte for byte what TensorFlow writes and reads."""

import subprocess
import sys

import tensorflow as tf

from chatbot.tfrecord import example_bytes, frame, masked_crc32c


def test_the_checksum_is_tfrecords_masked_crc32c():
    # CRC-32C("123456789") is 0xE3069283 (RFC 3720's check value), then masked
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def test_framed_records_are_the_bytes_tensorflows_writer_writes(tmp_path):
    records = [b"", b"x", example_bytes({"source": [5, 6, 3], "target": [2**40, 0]})]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    ours = b"".join(frame(record) for record in records)
    assert ours == (tmp_path / "tf.tfrecord").read_bytes()


def test_an_example_parses_as_a_tf_train_example():
    parsed = tf.train.Example.FromString(example_bytes({"source": [7, 1, 3], "target": []}))
    features = parsed.features.feature
    assert set(features) == {"source", "target"}
    assert list(features["source"].int64_list.value) == [7, 1, 3]
    assert list(features["target"].int64_list.value) == []


def test_writing_shards_imports_no_tensorflow():
    code = "import sys, chatbot.prepare; print('tensorflow' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert imported.strip() == "False"
