"""L2Normalization (SSD's conv4_3 normalisation) against a numpy reference written from its definition."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers import L2Normalization


def _reference(x, gamma, epsilon=1e-10):
    """y = gamma_c * x_c / max(||x||_2 over channels, epsilon), position by position, float64."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    for index in np.ndindex(*x.shape[:-1]):
        norm = max(np.sqrt(np.sum(x[index] ** 2)), epsilon)
        out[index] = np.asarray(gamma, np.float64) * x[index] / norm
    return out


def test_matches_reference_with_learned_scale():
    x = np.random.default_rng(0).normal(0, 50, (2, 3, 4, 8)).astype(np.float32)
    x[0, 0, 0] = 0.0  # an all-zero position stays zero (no NaN)
    layer = L2Normalization(scale_init=20.0)
    out = layer(x).numpy()
    np.testing.assert_allclose(out, _reference(x, [20.0] * 8), rtol=1e-5, atol=1e-5)
    assert np.all(out[0, 0, 0] == 0.0)
    gamma = np.linspace(1, 3, 8).astype(np.float32)
    layer.gamma.assign(gamma)
    np.testing.assert_allclose(layer(x).numpy(), _reference(x, gamma), rtol=1e-5, atol=1e-5)


def test_scale_is_trained_and_gradients_are_finite():
    x = tf.constant(np.random.default_rng(1).normal(0, 1, (1, 2, 2, 4)).astype(np.float32))
    x = tf.concat([x, tf.zeros([1, 1, 2, 4])], axis=1)
    layer = L2Normalization()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x) * tf.range(1.0, 5.0))
    grads = tape.gradient(y, [layer.gamma, x])
    assert layer.gamma.trainable and np.all(np.isfinite(grads[1].numpy()))
    assert np.abs(grads[0].numpy()).sum() > 0


def test_norm_in_float32_under_bfloat16_policy():
    x = np.random.default_rng(2).normal(0, 100, (1, 4, 4, 512)).astype(np.float32)
    layer = L2Normalization(dtype="mixed_bfloat16")
    out = layer(x)
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), _reference(x, [20.0] * 512), rtol=1e-2, atol=1e-2)


def test_config_round_trip_and_bad_arguments():
    layer = L2Normalization(scale_init=10.0, epsilon=1e-6, name="n")
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert (again.scale_init, again.epsilon, again.name) == (10.0, 1e-6, "n")
    for bad in (0, -1.0, True, "20"):
        with pytest.raises(ValueError, match="scale_init"):
            L2Normalization(scale_init=bad)
    with pytest.raises(ValueError, match="epsilon"):
        L2Normalization(epsilon=0)
    with pytest.raises(ValueError, match="channel"):
        L2Normalization().build((None, None, None, None))
