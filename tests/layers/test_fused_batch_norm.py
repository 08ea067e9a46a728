"""FusedBatchNormalization equals keras.layers.BatchNormalization: outputs, moving statistics and gradients, in
training and inference, under mixed precision, and where it falls back; every Detector uses it."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers import FusedBatchNormalization
from kerasdet.layers.fused_batch_norm import use_fused_batch_norms, uses_fused_call


def _pair(shape, **kwargs):
    """A Keras batch norm and a fused one with the same (non-trivial) variables."""
    keras_bn, fused = keras.layers.BatchNormalization(**kwargs), FusedBatchNormalization(**kwargs)
    keras_bn.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(0)
    for w in keras_bn.weights:
        value = rng.uniform(0.5, 2.0, w.shape) if "variance" in w.path or "gamma" in w.path else rng.normal(0, 1, w.shape)
        w.assign(value.astype(np.float32))
    fused.set_weights(keras_bn.get_weights())
    return keras_bn, fused


def _run(layer, x, training):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(y * tf.cos(tf.range(tf.size(y), dtype=y.dtype)[: y.shape[-1]]))
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.non_trainable_weights]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kwargs", [{}, dict(center=False), dict(scale=False, momentum=0.9, epsilon=1e-5)])
def test_equals_keras_batch_norm(training, kwargs):
    x = np.random.default_rng(1).normal(3.0, 2.0, (3, 7, 5, 6)).astype(np.float32)
    keras_bn, fused = _pair(x.shape, **kwargs)
    want, got = _run(keras_bn, x, training), _run(fused, x, training)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    for g_got, g_want in zip(got[1], want[1]):  # input, gamma and beta gradients
        np.testing.assert_allclose(g_got, g_want, rtol=1e-4, atol=1e-4)
    for s_got, s_want in zip(got[2], want[2]):  # moving mean and variance (the biased batch variance averaged in)
        np.testing.assert_allclose(s_got, s_want, rtol=1e-6, atol=1e-6)
    if training:
        assert not np.allclose(got[2][1], keras_bn.moving_variance.numpy() * 0 + 1.0)  # the statistics did move


def test_frozen_layer_uses_its_moving_statistics_in_training():
    x = np.random.default_rng(2).normal(0, 1, (2, 4, 4, 3)).astype(np.float32)
    keras_bn, fused = _pair(x.shape)
    keras_bn.trainable = fused.trainable = False
    before = [w.numpy() for w in fused.non_trainable_weights]
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)
    for w, b in zip(fused.non_trainable_weights, before):
        np.testing.assert_array_equal(w.numpy(), b)


def test_mixed_bfloat16_normalises_in_float32_and_returns_bfloat16():
    x = np.random.default_rng(3).normal(1.0, 3.0, (2, 6, 6, 4)).astype(np.float32)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        keras_bn, fused = _pair(x.shape)
        xb = tf.cast(x, tf.bfloat16)
        for training in (True, False):
            want, got = keras_bn(xb, training=training), fused(xb, training=training)
            assert got.dtype == tf.bfloat16
            np.testing.assert_allclose(tf.cast(got, tf.float32), tf.cast(want, tf.float32), rtol=2e-2, atol=2e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("shape, kwargs", [((4, 6), {}), ((2, 3, 4, 5), dict(axis=1)), ((2, 3, 5), {})])
def test_other_layouts_fall_back_to_keras(shape, kwargs):
    x = np.random.default_rng(4).normal(0, 1, shape).astype(np.float32)
    keras_bn, fused = _pair(shape, **kwargs)
    np.testing.assert_allclose(fused(x, training=True), keras_bn(x, training=True), rtol=1e-5, atol=1e-5)


def test_the_fused_kernel_is_what_runs():
    layer = FusedBatchNormalization()
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(
        tf.TensorSpec([2, 4, 4, 3], tf.float32)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "FusedBatchNormV3" in ops and "Mean" not in ops


def test_config_and_weights_are_keras_ones():
    layer = FusedBatchNormalization(momentum=0.97, epsilon=1e-3)
    config = layer.get_config()
    assert config == {**keras.layers.BatchNormalization(momentum=0.97, epsilon=1e-3).get_config(), "name": config["name"]}
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is FusedBatchNormalization and clone.momentum == 0.97


def test_every_detector_switches_its_batch_norms_and_keeps_their_weight_paths(tmp_path):
    """Every Keras batch norm of a Detector runs the fused call; its class stays Keras' (the weights files' paths
    come from class names), so a weights file saved without the switch loads into a switched model and back."""
    from kerasdet.models.ssd.ssd import SSD

    plain = SSD.compact(num_classes=3)
    plain.__dict__["_batch_norms_fused"] = True  # keep Keras' own call
    plain.build_for_size(128)
    model = SSD.compact(num_classes=3)
    model.build_for_size(128)
    norms = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(type(layer) is keras.layers.BatchNormalization and uses_fused_call(layer) for layer in norms)
    assert not any(uses_fused_call(layer) for layer in plain._flatten_layers())
    assert use_fused_batch_norms(model) == 0  # nothing left to switch
    plain.save_weights(tmp_path / "plain.weights.h5")
    model.load_weights(tmp_path / "plain.weights.h5")
    x = np.random.default_rng(5).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x)["class_logits"], plain(x)["class_logits"], rtol=1e-4, atol=1e-4)
    model.save_weights(tmp_path / "fused.weights.h5")
    plain.load_weights(tmp_path / "fused.weights.h5")


def test_layers_given_global_batch_statistics_keep_keras_call():
    """Training on several replicas replaces a batch norm's `_moments` with the global batch's statistics
    (`kerasdet.models.distribution`); the fused kernel would compute the replica's own, so such a layer keeps Keras'
    call, whichever of the two switches came first."""
    from kerasdet.models.distribution import _global_batch_statistics

    x = np.random.default_rng(6).normal(0, 1, (2, 4, 4, 3)).astype(np.float32)
    for order in ("fused first", "replicas first"):
        model = keras.Sequential([keras.layers.BatchNormalization()])
        model.build(x.shape)
        steps = [lambda: use_fused_batch_norms(model), lambda: _global_batch_statistics(model.layers[0])]
        for step in steps if order == "fused first" else steps[::-1]:
            step()
        layer, calls = model.layers[0], []
        hook = layer._moments
        layer._moments = lambda inputs, mask: calls.append(1) or hook(inputs, mask)
        model(x, training=True)
        assert calls, order


def test_float64_inputs_keep_keras_call():
    x = np.random.default_rng(7).normal(0, 1, (2, 3, 3, 2))
    keras_bn, fused = keras.layers.BatchNormalization(dtype="float64"), FusedBatchNormalization(dtype="float64")
    keras_bn.build(x.shape)
    fused.build(x.shape)
    got, want = fused(x, training=True), keras_bn(x, training=True)
    assert got.dtype == want.dtype == tf.float64
    np.testing.assert_allclose(got, want, rtol=1e-12)
