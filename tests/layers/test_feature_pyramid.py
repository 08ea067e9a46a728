"""FeaturePyramid through the layer harness, against a hand-wired reference, and on real backbones."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.backbones.resnet import ResNet
from kerasdet.layers.feature_pyramid import FeaturePyramid
from tests.layers.harness import check_layer

SEEDED = {"class_name": "GlorotUniform", "config": {"seed": 3}, "module": "keras.initializers"}


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class ThreeLevelPyramidForHarness(FeaturePyramid):
    """FeaturePyramid called as (c3, c4, c5), for the harness, which passes flat array arguments."""

    def call(self, c3, c4, c5):
        return super().call({"C3": c3, "C4": c4, "C5": c5})

    def build(self, c3_shape, c4_shape, c5_shape):
        super().build({"C3": c3_shape, "C4": c4_shape, "C5": c5_shape})

    def compute_output_shape(self, c3_shape, c4_shape, c5_shape):
        return super().compute_output_shape({"C3": c3_shape, "C4": c4_shape, "C5": c5_shape})


def _features(sizes=((16, 20), (8, 10), (4, 5)), channels=(6, 10, 12), batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {
        f"C{3 + i}": rng.normal(size=(batch,) + size + (c,)).astype(np.float32)
        for i, (size, c) in enumerate(zip(sizes, channels))
    }


def _expected_shapes(out, sizes, channels):
    return {k: tuple(v.shape) for k, v in out.items()} == {
        f"P{3 + i}": (2,) + size + (channels,) for i, size in enumerate(sizes)
    }


@pytest.mark.parametrize(
    "kwargs,sizes",
    [
        ({"num_channels": 8}, ((16, 20), (8, 10), (4, 5))),  # multiples of 32 pixels / ResNet ceil sizes
        ({"num_channels": 4, "extra_from": "pyramid", "max_level": 6}, ((13, 15), (7, 8), (4, 4))),
    ],
)
def test_harness(kwargs, sizes):
    c = _features(sizes)
    args = (c["C3"], c["C4"], c["C5"])
    kwargs = dict(kwargs, kernel_initializer=SEEDED)
    levels = kwargs.get("max_level", 7) - 2

    def check_empty(outputs, args):
        assert len(outputs) == levels
        for key, value in outputs.items():
            assert value.shape[0] == 0 and value.shape[-1] == kwargs["num_channels"], (key, value.shape)

    empty = [tuple(a[:0] for a in args)]
    check_layer(ThreeLevelPyramidForHarness, kwargs, args, empty_args=empty, empty_check=check_empty)


def _nearest(x, out_h, out_w):
    """Half-pixel-centre nearest neighbour, written out: output i reads input floor((i + 0.5) * in / out)."""
    in_h, in_w = x.shape[1:3]
    rows = [min(int(np.floor((i + 0.5) * in_h / out_h)), in_h - 1) for i in range(out_h)]
    cols = [min(int(np.floor((j + 0.5) * in_w / out_w)), in_w - 1) for j in range(out_w)]
    return x[:, rows][:, :, cols]


def _conv(layer, x):
    kernel, bias = (np.asarray(w) for w in layer.weights)
    stride = layer.strides[0]
    return np.asarray(tf.nn.conv2d(x, kernel, stride, "SAME")) + bias


def _reference(fpn, c, extra_from):
    """Lin et al. 2017 Fig. 3 plus RetinaNet's P6/P7, wired by hand from the layer's own kernels."""
    lat = {lvl: _conv(fpn.lateral_convs[i], c[f"C{lvl}"]) for i, lvl in enumerate((3, 4, 5))}
    m5 = lat[5]
    m4 = lat[4] + _nearest(m5, *lat[4].shape[1:3])
    m3 = lat[3] + _nearest(m4, *lat[3].shape[1:3])
    p = {f"P{lvl}": _conv(fpn.output_convs[i], m) for i, (lvl, m) in enumerate(((3, m3), (4, m4), (5, m5)))}
    p6_in = c["C5"] if extra_from == "backbone" else p["P5"]
    p["P6"] = _conv(fpn.extra_convs[0], p6_in)
    p["P7"] = _conv(fpn.extra_convs[1], np.maximum(p["P6"], 0.0))
    return p


@pytest.mark.parametrize("extra_from", ["backbone", "pyramid"])
@pytest.mark.parametrize("sizes", [((16, 20), (8, 10), (4, 5)), ((13, 15), (7, 8), (4, 4)), ((12, 9), (6, 4), (3, 2))])
def test_matches_hand_wired_reference(extra_from, sizes):
    c = _features(sizes, seed=1)
    fpn = FeaturePyramid(num_channels=5, extra_from=extra_from)
    out = fpn(c)
    want = _reference(fpn, c, extra_from)
    assert list(out) == ["P3", "P4", "P5", "P6", "P7"]
    for key in want:
        np.testing.assert_allclose(out[key], want[key], atol=1e-4, err_msg=key)
    h5, w5 = sizes[2]
    assert out["P6"].shape[1:3] == ((h5 + 1) // 2, (w5 + 1) // 2)
    assert out["P7"].shape[1:3] == ((h5 + 3) // 4, (w5 + 3) // 4)


@pytest.mark.parametrize("sizes", [((13, 15), (7, 8), (4, 4)), ((16, 20), (8, 10), (4, 5))])
def test_dynamic_shapes_and_empty_batch_in_graph(sizes):
    """With unknown batch and sizes (model.fit's case) the layer branches around an empty batch."""
    c = _features(sizes, seed=2)
    fpn = FeaturePyramid(num_channels=4)
    eager = fpn(c)
    spec = {k: tf.TensorSpec([None, None, None, v.shape[-1]], tf.float32) for k, v in c.items()}
    graph = tf.function(fpn, input_signature=[spec])
    for key, value in graph(c).items():
        np.testing.assert_allclose(value, eager[key], atol=1e-5)
    empty = graph({k: v[:0] for k, v in c.items()})
    assert {k: tuple(v.shape) for k, v in empty.items()} == {k: (0,) + tuple(v.shape[1:]) for k, v in eager.items()}


def test_levels_channels_and_ignored_keys():
    c = _features(((16, 16), (8, 8), (4, 4)))
    c["C2"] = np.zeros((2, 32, 32, 3), np.float32)  # not used with min_level=3
    out = FeaturePyramid(min_level=3, max_level=5, num_channels=7)(c)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"P3": (2, 16, 16, 7), "P4": (2, 8, 8, 7), "P5": (2, 4, 4, 7)}
    out = FeaturePyramid(min_level=4, max_level=4, num_channels=3)(c)
    assert list(out) == ["P4"] and out["P4"].shape == (2, 8, 8, 3)
    out = FeaturePyramid(min_level=2, max_level=6, num_channels=3)(c)
    assert [tuple(v.shape[1:3]) for v in out.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]


def test_gradients_reach_every_convolution():
    c = {k: tf.constant(v) for k, v in _features().items()}
    fpn = FeaturePyramid(num_channels=4)
    with tf.GradientTape() as tape:
        out = fpn(c)
        total = sum(tf.reduce_sum(tf.square(v)) for v in out.values())
    grads = tape.gradient(total, fpn.trainable_weights)
    assert len(grads) == 2 * (3 + 3 + 2)
    assert all(g is not None and np.all(np.isfinite(g)) and np.abs(g).sum() > 0 for g in grads)


@pytest.mark.parametrize("image_size", [(256, 256), (100, 120)])
def test_on_resnet_features(image_size):
    backbone = ResNet(18, levels=("C3", "C4", "C5"), width=0.25)
    images = keras.Input((None, None, 3))
    pyramid = FeaturePyramid(num_channels=16)(backbone(images))
    model = keras.Model(images, pyramid)
    out = model(np.random.default_rng(0).uniform(0, 255, (1,) + image_size + (3,)).astype(np.float32))
    h, w = image_size
    for lvl in range(3, 8):
        stride = 2**lvl
        assert tuple(out[f"P{lvl}"].shape) == (1, -(-h // stride), -(-w // stride), 16), lvl


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"min_level": 0}, ValueError, "min_level"),
        ({"min_level": 4, "max_level": 3}, ValueError, "max_level"),
        ({"num_channels": 2.5}, ValueError, "num_channels"),
        ({"extra_from": "C5"}, ValueError, "extra_from"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        FeaturePyramid(**kwargs)


def test_bad_features():
    c = _features()
    with pytest.raises(TypeError, match="features.*dict.*list"):
        FeaturePyramid()([c["C3"], c["C4"], c["C5"]])
    with pytest.raises(ValueError, match=r"lacks \['C4'\]"):
        FeaturePyramid()({"C3": c["C3"], "C5": c["C5"]})
    with pytest.raises(ValueError, match="C3"):
        FeaturePyramid()({"C1": c["C3"]})
    with pytest.raises(ValueError, match=r"features\['C3'\].*\(2, 16, 20\)"):
        FeaturePyramid()({"C3": c["C3"][..., 0], "C4": c["C4"], "C5": c["C5"]})


def test_subsample_extra_levels_are_strided_copies_without_parameters():
    """extra_from="subsample": P6 is P5 taken every second pixel (the FPN paper's RPN level), no weights added."""
    layer = FeaturePyramid(min_level=2, max_level=6, num_channels=8, extra_from="subsample")
    maps = {f"C{k}": tf.random.normal([2, 2 ** (8 - k) + (k == 5), 2 ** (8 - k), 4]) for k in (2, 3, 4, 5)}
    out = layer(maps)
    np.testing.assert_array_equal(out["P6"].numpy(), out["P5"].numpy()[:, ::2, ::2])
    assert out["P6"].shape[1:3] == ((out["P5"].shape[1] + 1) // 2, (out["P5"].shape[2] + 1) // 2)
    convs = FeaturePyramid(min_level=2, max_level=6, num_channels=8, extra_from="pyramid")
    convs(maps)
    assert len(layer.weights) == len(convs.weights) - 2  # the pyramid form's extra 3x3 kernel and bias
    assert FeaturePyramid.from_config(layer.get_config()).extra_from == "subsample"
