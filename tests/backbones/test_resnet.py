"""ResNet backbones: architecture (parameter counts, parity with keras.applications), outputs, saving."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.backbones._common import ImagePreprocessing
from kerasdet.backbones.resnet import ResNet

LEVELS = ("C2", "C3", "C4", "C5")


def _images(size=(64, 64), batch=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch,) + size + (3,)).astype(np.float32)


@pytest.mark.parametrize(
    "depth,trainable,total,channels",
    [
        # torchvision's resnet18/34 parameter counts (11,689,512 / 21,797,672) less the 1000-way fc layer
        (18, 11_689_512 - 513_000, None, (64, 128, 256, 512)),
        (34, 21_797_672 - 513_000, None, (64, 128, 256, 512)),
        # keras.applications.ResNet50/101 with include_top=False: 25,636,712 / 44,707,176 less the fc layer
        (50, None, 25_636_712 - 2_049_000, (256, 512, 1024, 2048)),
        (101, None, 44_707_176 - 2_049_000, (256, 512, 1024, 2048)),
    ],
)
def test_architecture_sizes_and_outputs(depth, trainable, total, channels):
    backbone = ResNet(depth)
    if trainable is not None:
        assert sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) == trainable
    if total is not None:
        assert backbone.count_params() == total
    out = backbone(_images((64, 96), batch=1))
    assert list(out) == list(LEVELS)
    for level, c in zip(LEVELS, channels):
        stride = backbone.feature_strides[level]
        assert tuple(out[level].shape) == (1, 64 // stride, 96 // stride, c), level
        assert np.all(np.isfinite(out[level]))


def test_resnet50_equals_keras_applications():
    """Same layer names, layout and preprocessing: copying weights by name gives the same features."""
    reference = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(4)
    for layer in reference.layers:  # non-default statistics, so that BatchNorm matters
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            gamma, var = rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(0.5, 2.0, var.shape)
            layer.set_weights([gamma, beta + 0.1, mean + 0.1, var])
    backbone = ResNet(50)
    names = {layer.name: layer for layer in reference.layers}
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(names[layer.name].get_weights())
    images = _images((64, 64), batch=1)
    probe = keras.Model(reference.input, [reference.get_layer(f"conv{i}_block{n}_out").output
                                          for i, n in ((2, 3), (3, 4), (4, 6), (5, 3))])
    want = probe(keras.applications.resnet.preprocess_input(images.copy()))
    got = backbone(images)
    for level, w in zip(LEVELS, want):
        np.testing.assert_allclose(got[level], w, rtol=1e-4, atol=1e-4 * float(np.abs(w).max()), err_msg=level)


@pytest.mark.parametrize("width,channels", [(0.25, (16, 32, 64, 128)), (0.5, (32, 64, 128, 256))])
def test_compact_width(width, channels):
    backbone = ResNet(18, width=width)
    out = backbone(_images((64, 64), batch=1))
    assert tuple(v.shape[-1] for v in out.values()) == channels
    full = sum(int(np.prod(w.shape)) for w in ResNet(18).trainable_weights)
    small = sum(int(np.prod(w.shape)) for w in backbone.trainable_weights)
    assert small < full * width * width * 1.1


def test_bottleneck_width():
    out = ResNet(50, width=0.25, levels=("C5",))(_images((64, 64), batch=1))
    assert tuple(out["C5"].shape) == (1, 2, 2, 512)


@pytest.mark.parametrize("size", [(100, 120), (33, 65), (250, 97)])
def test_sizes_not_divisible_by_32_round_up(size):
    backbone = ResNet(18, width=0.25)
    out = backbone(_images(size, batch=1))
    for level, stride in backbone.feature_strides.items():
        assert tuple(out[level].shape[1:3]) == (-(-size[0] // stride), -(-size[1] // stride)), (level, size)


def test_levels_select_outputs_and_truncate():
    c4 = ResNet(18, levels=("C4",), width=0.25)
    assert list(c4.output) == ["C4"] and c4.feature_strides == {"C4": 16}
    assert not any(layer.name.startswith("conv5") for layer in c4.layers)
    fpn = ResNet(18, levels=["C5", "C3", "C4"], width=0.25)  # any order; returned fine to coarse
    assert fpn.levels == ("C3", "C4", "C5")


def test_integer_images_and_in_model_preprocessing():
    backbone = ResNet(18, width=0.25, levels=("C3",))
    images = _images((64, 64)).round()
    np.testing.assert_allclose(backbone(images.astype(np.uint8))["C3"], backbone(images)["C3"], atol=1e-5)
    for mode in ("caffe", "torch", "tf"):
        want = keras.applications.imagenet_utils.preprocess_input(images.copy(), mode=mode)
        np.testing.assert_allclose(ImagePreprocessing(mode)(images), want, rtol=1e-6, atol=1e-5)


def test_config_and_keras_round_trip(tmp_path):
    backbone = ResNet(18, levels=("C3", "C4", "C5"), width=0.25, name="tiny")
    config = backbone.get_config()
    for arg in ("depth", "levels", "width", "weights", "input_shape", "name"):
        assert arg in config
    clone = ResNet.from_config(config)
    assert clone.get_config() == config and clone.count_params() == backbone.count_params()
    # inside a detector-like model, through a .keras file
    images = keras.Input((None, None, 3))
    features = backbone(images)
    head = keras.layers.Conv2D(4, 3, padding="same", name="head")(features["C4"])
    model = keras.Model(images, {"c5": features["C5"], "head": head})
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _images((64, 64))
    want, got = model(x), loaded(x)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)
    assert isinstance(loaded.get_layer("tiny"), ResNet)


def test_weights_file(tmp_path):
    backbone = ResNet(18, width=0.25)
    path = os.path.join(tmp_path, "tiny.weights.h5")
    backbone.save_weights(path)
    again = ResNet(18, width=0.25, weights=path)
    x = _images((64, 64))
    np.testing.assert_allclose(again(x)["C5"], backbone(x)["C5"], atol=1e-6)


def test_mixed_float16():
    reference = ResNet(18, width=0.25)
    keras.config.set_dtype_policy("mixed_float16")
    backbone = ResNet(18, width=0.25)
    backbone.set_weights(reference.get_weights())
    x = _images((64, 64))
    out = backbone(x)
    want = reference(x)
    for level in LEVELS:
        assert out[level].dtype == tf.float16
        np.testing.assert_allclose(np.asarray(out[level], np.float32), want[level], atol=5e-2, rtol=5e-2)


def test_trains_one_step():
    backbone = ResNet(18, width=0.25, levels=("C5",))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(backbone(_images((64, 64)), training=True)["C5"])
    grads = tape.gradient(loss, backbone.trainable_weights)
    assert all(g is not None and np.all(np.isfinite(g)) for g in grads)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"depth": 20}, ValueError, "depth"),
        ({"depth": 50.0}, ValueError, "depth"),
        ({"levels": ("C6",)}, ValueError, "levels"),
        ({"levels": ()}, ValueError, "levels"),
        ({"levels": ("C3", "C3")}, ValueError, "levels"),
        ({"width": 0}, ValueError, "width"),
        ({"input_shape": (64, 64, 1)}, ValueError, "input_shape"),
        ({"input_shape": (16, 64, 3)}, ValueError, "input_shape"),
        ({"weights": "no/such/file.h5"}, ValueError, "weights"),
        ({"depth": 18, "weights": "imagenet"}, ValueError, "ResNet-18.*no Keras ImageNet weights"),
        ({"depth": 34, "weights": "imagenet"}, ValueError, "ResNet-34.*keras.applications"),
        ({"depth": 50, "width": 0.5, "weights": "imagenet"}, ValueError, "width=1.0"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ResNet(**kwargs)


def test_bad_images():
    """Grayscale and RGBA images are refused with the shape, not silently broadcast (DESIGN.md §3)."""
    backbone = ResNet(18, width=0.25, levels=("C3",))
    for channels in (1, 4):
        with pytest.raises(ValueError, match=rf"images.*3.*\(2, 64, 64, {channels}\)"):
            backbone(np.zeros((2, 64, 64, channels), np.float32))
