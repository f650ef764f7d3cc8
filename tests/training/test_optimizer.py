import keras
import numpy as np
import pytest
import tensorflow as tf

from chatbot.training.optimizer import FusedAdam


@pytest.mark.parametrize("clip", [None, 0.5])
def test_fused_adam_matches_keras_adam(clip):
    rng = np.random.default_rng(0)
    start = rng.normal(size=(4, 3)).astype("float32")
    reference, fused = keras.Variable(start), keras.Variable(start)
    keras_adam = keras.optimizers.Adam(0.05, global_clipnorm=clip)
    fused_adam = FusedAdam(0.05, global_clipnorm=clip)
    for _ in range(5):
        gradient = tf.constant(rng.normal(size=(4, 3)).astype("float32"))
        keras_adam.apply([gradient], [reference])
        fused_adam.apply([gradient], [fused])
    # The fused kernel orders the same arithmetic differently: float32 rounding, not a formula.
    np.testing.assert_allclose(fused.numpy(), reference.numpy(), atol=1e-5)
    assert not np.allclose(fused.numpy(), start)


def test_sparse_gradients_from_embeddings_are_applied():
    layer = keras.layers.Embedding(10, 3)
    layer.build((None,))
    before = layer.embeddings.numpy().copy()
    optimizer = FusedAdam(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(tf.constant([1, 1, 4])))
    gradient = tape.gradient(loss, layer.trainable_variables)
    assert isinstance(gradient[0], tf.IndexedSlices)
    optimizer.apply(gradient, layer.trainable_variables)
    changed = np.flatnonzero(np.abs(layer.embeddings.numpy() - before).sum(1))
    assert changed.tolist() == [1, 4]


def test_config_round_trip():
    optimizer = FusedAdam(0.01, beta_1=0.8, global_clipnorm=2.0)
    restored = FusedAdam.from_config(optimizer.get_config())
    assert restored.get_config() == optimizer.get_config()
