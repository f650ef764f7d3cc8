"""Seeded random numbers for sampling that TensorFlow, XLA and TensorFlow Lite compute alike.

TensorFlow's stateless random ops (`tf.random.stateless_*`) are not TensorFlow Lite builtins, so
a decoding loop that samples with them cannot run in the Lite interpreter. Here every number
is a hash of (seed, step, position) made of int32 multiplies, shifts and xors, which all three
runtimes evaluate bit for bit the same way: the same seed gives the same reply whichever runs
the loop. The hash is the 32-bit finalizer of MurmurHash3 (Appleby), applied twice; its output
bits pass avalanche tests, which is plenty for drawing a token.
"""

from __future__ import annotations

import tensorflow as tf

# MurmurHash3's fmix32 constants and the golden-ratio increment, as two's complement int32.
_MIX_1 = 0x85EBCA6B - (1 << 32)
_MIX_2 = 0xC2B2AE35 - (1 << 32)
_GOLDEN = 0x9E3779B9 - (1 << 32)
_UNIFORM_BITS = 23  # float32 holds 24 significant bits: 23 random ones plus a half stay exact


def _shift_right(x: tf.Tensor, bits: int) -> tf.Tensor:
    """Logical x >>> bits: TensorFlow shifts signed integers arithmetically, copying the sign
    bit into the top, so those bits are cleared again."""
    filled = tf.constant(-(1 << (32 - bits)), tf.int32)
    return tf.bitwise.bitwise_xor(tf.bitwise.right_shift(x, bits), tf.where(x < 0, filled, 0))


def mix(x: tf.Tensor) -> tf.Tensor:
    """MurmurHash3's fmix32 on int32 (multiplication wraps around, as in uint32)."""
    x = tf.bitwise.bitwise_xor(x, _shift_right(x, 16)) * _MIX_1
    x = tf.bitwise.bitwise_xor(x, _shift_right(x, 13)) * _MIX_2
    return tf.bitwise.bitwise_xor(x, _shift_right(x, 16))


def uniform(seed: tf.Tensor, step: tf.Tensor, shape: tf.TensorShape | list[int]) -> tf.Tensor:
    """float32 numbers in the open interval (0, 1), one per element of `shape` (fully
    defined or a shape tensor), from an int32 [2] `seed` and an int32 `step`."""
    key = mix(mix(seed[0] + _GOLDEN) + seed[1] * _GOLDEN + step)
    counter = tf.reshape(tf.range(tf.reduce_prod(shape)), shape)
    bits = mix(mix(counter + key) + key * _GOLDEN)
    top = tf.bitwise.right_shift(bits, 32 - _UNIFORM_BITS)  # [-2**22, 2**22)
    return (tf.cast(top, tf.float32) + (2.0 ** (_UNIFORM_BITS - 1) + 0.5)) / 2.0**_UNIFORM_BITS


def categorical(logits: tf.Tensor, seed: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """One token per row of `logits` [R, V] drawn from softmax(logits) by inverting its
    cumulative distribution with one uniform number per row: the first token whose cumulative
    probability reaches it. Tokens filtered out with a large negative logit have probability
    zero and are never drawn. One number per row, rather than Gumbel noise per token, keeps a
    step cheap in TensorFlow Lite, whose integer kernels are slow."""
    cumulative = tf.cumsum(tf.nn.softmax(logits, axis=-1), axis=-1)
    rows = tf.shape(logits)[0]
    # scaled by the row's total, which float rounding leaves a little off 1
    target = uniform(seed, step, tf.stack([rows, 1])) * cumulative[:, -1:]
    # the first maximum of min(cumulative - target, 0), that is of 0: float ops, which Lite
    # runs several times faster than a comparison of whole rows and a count
    return tf.argmax(tf.minimum(cumulative - target, 0.0), axis=-1, output_type=tf.int32)
