"""Checks shared by the loss tests: the reductions every loss supports, config round trip, graph/jit/float16."""

import keras
import numpy as np
import tensorflow as tf

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None)


def assert_config_round_trip(loss_cls, **kwargs):
    """`loss_cls(**kwargs)` keeps every argument in its config and comes back equal through Keras serialization."""
    loss = loss_cls(**kwargs)
    config = loss.get_config()
    for arg in kwargs:
        assert arg in config
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is loss_cls and again.get_config() == config


def assert_graph_jit_and_float16_inputs(loss, y_true, y_pred):
    """`loss` gives the eager value in `tf.function` and under XLA, and float32 (close) from float16 predictions."""
    eager = loss(y_true, y_pred)
    np.testing.assert_allclose(tf.function(loss)(y_true, y_pred), eager, rtol=1e-6)
    np.testing.assert_allclose(tf.function(loss, jit_compile=True)(y_true, y_pred), eager, rtol=1e-5)
    half = loss(y_true, tf.constant(y_pred, tf.float16))
    assert half.dtype == tf.float32
    np.testing.assert_allclose(half, eager, rtol=1e-2)
