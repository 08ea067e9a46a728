"""MobileNetV2 backbone: the keras.applications layers it returns, sizes, preprocessing, saving."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.backbones.mobilenet import MobileNetV2
from kerasdet.layers.feature_pyramid import FeaturePyramid

LEVELS = ("C2", "C3", "C4", "C5")


def _images(size=(64, 64), batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch,) + size + (3,)).astype(np.float32)


@pytest.mark.parametrize("alpha,channels", [(1.0, (24, 32, 96, 1280)), (0.35, (8, 16, 32, 1280))])
def test_outputs(alpha, channels):
    backbone = MobileNetV2(alpha=alpha)
    out = backbone(_images((64, 96), batch=1))
    assert list(out) == list(LEVELS)
    for level, c in zip(LEVELS, channels):
        stride = backbone.feature_strides[level]
        assert tuple(out[level].shape) == (1, 64 // stride, 96 // stride, c), level


def test_parameter_count_equals_keras_applications():
    # keras.applications.MobileNetV2: 3,538,984 parameters with the 1280 -> 1000 classifier (1,281,000)
    assert MobileNetV2(alpha=1.0).count_params() == 3_538_984 - 1_281_000


def test_equals_keras_applications_features():
    """The same layers, with the images mapped to [-1, 1] inside the model."""
    reference = keras.applications.MobileNetV2(include_top=False, weights=None, alpha=0.35, input_shape=(None, None, 3))
    backbone = MobileNetV2(alpha=0.35)
    layers = {layer.name: layer for layer in reference.layers}
    rng = np.random.default_rng(1)
    for layer in backbone.layers:
        if layer.weights:
            values = [
                v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for v in layers[layer.name].get_weights()
            ]
            layers[layer.name].set_weights(values)
            layer.set_weights(values)
    names = ("block_2_add", "block_5_add", "block_12_add", "out_relu")
    probe = keras.Model(reference.input, [reference.get_layer(n).output for n in names])
    images = _images((64, 64), batch=1)
    want = probe(keras.applications.mobilenet_v2.preprocess_input(images.copy()))
    got = backbone(images)
    for level, w in zip(LEVELS, want):
        np.testing.assert_allclose(got[level], w, rtol=1e-4, atol=1e-4 * (1 + float(np.abs(w).max())), err_msg=level)


def test_odd_sizes_and_feature_pyramid():
    """Keras pads its stride-2 blocks for even sizes; the pyramid aligns to whatever comes out."""
    backbone = MobileNetV2(alpha=0.35, levels=("C3", "C4", "C5"))
    images = keras.Input((None, None, 3))
    model = keras.Model(images, FeaturePyramid(num_channels=8)(backbone(images)))
    # (97, 161): the stride-2 first convolution rounds up (49, 81), the dynamic-shape blocks down
    assert backbone(_images((97, 161), batch=1))["C5"].shape[1:3] == (3, 5)
    for size in ((100, 120), (97, 161)):
        features = backbone(_images(size, batch=1))
        pyramid = model(_images(size, batch=1))
        for level in ("C3", "C4", "C5"):
            assert pyramid["P" + level[1]].shape[1:3] == features[level].shape[1:3]
            assert np.all(np.isfinite(pyramid["P" + level[1]]))


def test_config_and_keras_round_trip(tmp_path):
    backbone = MobileNetV2(alpha=0.35, levels=("C4", "C5"))
    config = backbone.get_config()
    for arg in ("alpha", "levels", "weights", "input_shape", "name"):
        assert arg in config
    assert MobileNetV2.from_config(config).get_config() == config
    path = os.path.join(tmp_path, "backbone.keras")
    backbone.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MobileNetV2)
    x = _images((64, 64))
    for level in ("C4", "C5"):
        np.testing.assert_allclose(loaded(x)[level], backbone(x)[level], atol=1e-5)


def test_weights_file_and_fixed_input_shape(tmp_path):
    backbone = MobileNetV2(alpha=0.35, input_shape=(96, 96, 3))
    assert backbone.output["C5"].shape[1:3] == (3, 3)
    path = os.path.join(tmp_path, "m.weights.h5")
    backbone.save_weights(path)
    again = MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=path)
    x = _images((96, 96))
    np.testing.assert_allclose(again(x)["C5"], backbone(x)["C5"], atol=1e-6)


def test_mixed_float16():
    keras.config.set_dtype_policy("mixed_float16")
    out = MobileNetV2(alpha=0.35)(_images((64, 64)))
    assert all(v.dtype == tf.float16 and np.all(np.isfinite(v)) for v in out.values())


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": 0}, "alpha"),
        ({"alpha": 0.4, "weights": "imagenet"}, "alpha"),
        ({"levels": ("P3",)}, "levels"),
        ({"input_shape": (None, None, 4)}, "input_shape"),
        ({"weights": 3}, "weights"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MobileNetV2(**kwargs)
