"""TFRecord files of `tf.train.Example` int64 features, written without TensorFlow.

`chatbot prepare` writes the shards training reads, and importing TensorFlow alone costs it
0.58 GB of its memory (issue 19), so the writer is built from the file format's two parts:

- framing: each record is its length (uint64, little-endian), the masked CRC-32C of those 8
  bytes, the data, and the data's masked CRC-32C (tensorflow/core/lib/io/record_writer.cc);
  the CRC comes from `google-crc32c`, Google's C implementation;
- the record: a `tf.train.Example` protobuf (tensorflow/core/example/example.proto), built by
  the `protobuf` runtime from a descriptor declared here. `Features.feature` is a map; a
  repeated (key, value) entry is the same on the wire, and keeps the features in order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_MASK_DELTA = 0xA282EAD8
_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant, so that a CRC
    stored inside checksummed data does not checksum to a fixed value."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """One record as it lies in a TFRecord file."""
    length = _LENGTH.pack(len(record))
    return length + _CRC.pack(masked_crc32c(length)) + record + _CRC.pack(masked_crc32c(record))


def _example_class() -> Any:
    """The `tf.train.Example` message with int64 features only, in a private descriptor pool
    (so it never clashes with TensorFlow's own, when both are loaded)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="chatbot/tfrecord_example.proto", package="chatbot.tfrecord", syntax="proto3"
    )
    field = descriptor_pb2.FieldDescriptorProto
    repeated, optional = field.LABEL_REPEATED, field.LABEL_OPTIONAL

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        added = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            entry = added.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = type_name

    message("Int64List", ("value", 1, field.TYPE_INT64, repeated, ""))
    message(
        "Feature", ("int64_list", 3, field.TYPE_MESSAGE, optional, ".chatbot.tfrecord.Int64List")
    )
    message(
        "FeatureEntry",
        ("key", 1, field.TYPE_STRING, optional, ""),
        ("value", 2, field.TYPE_MESSAGE, optional, ".chatbot.tfrecord.Feature"),
    )
    message(
        "Features", ("feature", 1, field.TYPE_MESSAGE, repeated, ".chatbot.tfrecord.FeatureEntry")
    )
    message("Example", ("features", 1, field.TYPE_MESSAGE, optional, ".chatbot.tfrecord.Features"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("chatbot.tfrecord.Example"))


_Example = _example_class()


def example_bytes(features: dict[str, Sequence[int]]) -> bytes:
    """A serialized `tf.train.Example` with one int64 list feature per key, in order."""
    example = _Example()
    for key, values in features.items():
        entry = example.features.feature.add(key=key)
        entry.value.int64_list.value.extend(values)
    return example.SerializeToString()
