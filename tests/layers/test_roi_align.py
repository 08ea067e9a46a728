"""RoIAlign, PSRoIAlign and MultiLevelRoIAlign through the layer harness, and against the references."""

import os
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.multi_level_roi_align import MultiLevelRoIAlign
from kerasdet.layers.ps_roi_align import PSRoIAlign
from kerasdet.layers.roi_align import RoIAlign
from tests.layers.harness import check_layer, roi_empty_args, roi_empty_check
from tests.reference import roi_align as ref


def _inputs(channels, seed=0, size=(10, 12), stride=8):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2,) + size + (channels,)).astype(np.float32)
    h, w = size[0] * stride, size[1] * stride
    start = rng.uniform(-0.2, 0.9, size=(2, 6, 2)) * [w, h]
    extent = rng.uniform(0.05, 0.7, size=(2, 6, 2)) * [w, h]
    # off-grid corners (+0.3): float16 rounding of the rois, which the layers must not do, would show
    rois = (np.concatenate([start, start + extent], axis=-1) + 0.3).astype(np.float32)
    rois[0, 1] = -1.0
    return features, rois


@pytest.mark.parametrize("output_size,sampling_ratio,aligned", [(7, 2, True), ((3, 2), 0, False)])
def test_roi_align_layer(output_size, sampling_ratio, aligned):
    features, rois = _inputs(4)
    kwargs = {"output_size": output_size, "spatial_scale": 0.125, "sampling_ratio": sampling_ratio, "aligned": aligned}
    tail = ((7, 7) if output_size == 7 else output_size) + (4,)
    empty = roi_empty_args(features, rois)
    check_layer(RoIAlign, kwargs, (features, rois), empty_args=empty, empty_check=roi_empty_check(tail), jit=False)
    out = RoIAlign(**kwargs)(features, rois)
    want = ref.roi_align(features, rois, output_size, 0.125, sampling_ratio, aligned)
    np.testing.assert_allclose(out, want, atol=1e-4)


def test_ps_roi_align_layer():
    features, rois = _inputs(3 * 4)
    kwargs = {"output_size": (2, 2), "spatial_scale": 0.125, "sampling_ratio": 2}
    empty = roi_empty_args(features, rois)
    check_layer(PSRoIAlign, kwargs, (features, rois), empty_args=empty, empty_check=roi_empty_check((2, 2, 3)), jit=False)
    out = PSRoIAlign(**kwargs)(features, rois)
    np.testing.assert_allclose(out, ref.ps_roi_align(features, rois, (2, 2), 0.125, 2), atol=1e-4)


def _half_precision_case(name):
    """(layer factory, its features argument, the numpy reference on given features, rois): rois up to ~950 px, off
    the float16 grid (spacing 0.5 px above 512), on maps coarse enough for the rois to fit."""
    features, rois = _inputs(12)
    rois = rois * 8 + 0.3  # float16 would move these corners by up to 0.25 px
    if name == "RoIAlign":
        return (lambda: RoIAlign(3, spatial_scale=1 / 64)), features[..., :4], \
            (lambda f: ref.roi_align(f, rois, 3, 1 / 64, 2, True)), rois
    if name == "PSRoIAlign":
        return (lambda: PSRoIAlign((2, 2), spatial_scale=1 / 64, sampling_ratio=2)), features, \
            (lambda f: ref.ps_roi_align(f, rois, (2, 2), 1 / 64, 2)), rois
    rng = np.random.default_rng(5)
    maps = [rng.normal(size=(2, 30, 30, 4)).astype(np.float32), rng.normal(size=(2, 15, 15, 4)).astype(np.float32)]
    levels = {"canonical_scale": 224.0, "canonical_level": 5}
    return (lambda: MultiLevelRoIAlign(3, strides=[32, 64], **levels)), maps, \
        (lambda f: ref.multilevel_roi_align(f, [32, 64], rois, 3, **levels)), rois


@pytest.mark.parametrize("name", ["RoIAlign", "PSRoIAlign", "MultiLevelRoIAlign"])
def test_layers_do_not_round_rois_under_mixed_precision(name):
    # Under mixed_float16 the features are float16 but the rois must reach the op in float32. The reference runs on
    # the same float16-rounded features with float32 rois, so what remains is the output's float16 rounding
    # (relative 2^-11 = 4.9e-4). Rounding the rois to float16 moves these outputs by up to 4.6e-3, which the
    # tolerance below (1e-3 relative + 2e-4) catches: checked by planting that cast in the layers' `call` once.
    make, features, reference, rois = _half_precision_case(name)
    to_half = lambda f: tf.constant(f, tf.float16)  # noqa: E731
    half = [to_half(f) for f in features] if isinstance(features, list) else to_half(features)
    rounded = tf.nest.map_structure(lambda t: t.numpy().astype(np.float32), half)
    keras.config.set_dtype_policy("mixed_float16")
    try:
        out = make()(half, tf.constant(rois))
    finally:
        keras.config.set_dtype_policy("float32")
    assert out.dtype == tf.float16
    np.testing.assert_allclose(np.asarray(out, np.float32), reference(rounded), rtol=1e-3, atol=2e-4)


@keras.saving.register_keras_serializable(package="kerasdet_tests")
class TwoLevelRoIAlignForHarness(MultiLevelRoIAlign):
    """MultiLevelRoIAlign called as (p2, p3, rois), for the harness, which passes flat array arguments.

    Like its parent it does not run under jit_compile=True (crop_and_resize has no XLA kernel).
    """

    def call(self, p2, p3, rois):
        return super().call([p2, p3], rois)

    def compute_output_shape(self, p2_shape, p3_shape, rois_shape):
        return super().compute_output_shape([p2_shape, p3_shape], rois_shape)


def _pyramid(seed=0):
    rng = np.random.default_rng(seed)
    p2 = rng.normal(size=(2, 16, 20, 3)).astype(np.float32)
    p3 = rng.normal(size=(2, 8, 10, 3)).astype(np.float32)
    start = rng.uniform(-4, 60, size=(2, 7, 2))
    extent = np.exp(rng.uniform(np.log(3), np.log(60), size=(2, 7, 2)))
    rois = (np.concatenate([start, start + extent], axis=-1) + 0.3).astype(np.float32)
    rois[1, 3] = -1.0
    return p2, p3, rois


def test_multi_level_roi_align_layer():
    p2, p3, rois = _pyramid()
    kwargs = {"output_size": 3, "strides": [4, 8], "canonical_scale": 16.0, "canonical_level": 3}
    check_layer(
        TwoLevelRoIAlignForHarness,
        kwargs,
        (p2, p3, rois),
        empty_args=roi_empty_args(p2, p3, rois),
        empty_check=roi_empty_check((3, 3, 3)),
        jit=False,
    )
    out = MultiLevelRoIAlign(**kwargs)([p2, p3], rois)
    want = ref.multilevel_roi_align([p2, p3], [4, 8], rois, 3, canonical_scale=16.0, canonical_level=3)
    np.testing.assert_allclose(out, want, atol=1e-4)
    levels = ref.assign_fpn_levels(rois, 2, 3, 16.0, 3)
    assert 0 < np.sum(levels == 2) < levels.size  # both levels are used


def test_multi_level_roi_align_dict_inputs_in_a_saved_model():
    p2, p3, rois = _pyramid(1)
    p6 = np.zeros((2, 1, 2, 3), np.float32)  # an RPN-only level the layer must ignore
    layer = MultiLevelRoIAlign(3, strides={"p3": 8, "p2": 4}, canonical_scale=16.0, canonical_level=3)
    inputs = {
        "p2": keras.Input((None, None, 3), name="p2"),
        "p3": keras.Input((None, None, 3), name="p3"),
        "p6": keras.Input((None, None, 3), name="p6"),
    }
    boxes = keras.Input((None, 4), name="rois")
    out = layer(inputs, boxes)
    assert tuple(out.shape) == (None, None, 3, 3, 3)
    model = keras.Model([inputs, boxes], out)
    feed = [{"p2": p2, "p3": p3, "p6": p6}, rois]
    want = ref.multilevel_roi_align([p2, p3], [4, 8], rois, 3, canonical_scale=16.0, canonical_level=3)
    np.testing.assert_allclose(model(feed), want, atol=1e-4)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(feed), want, atol=1e-4)
    assert loaded.layers[-1].get_config()["strides"] == {"p3": 8, "p2": 4}


def test_layers_opt_out_of_auto_jit():
    for layer in (RoIAlign(7), PSRoIAlign(7), MultiLevelRoIAlign(7)):
        assert layer.supports_jit is False


@pytest.mark.parametrize(
    "make,exc,words",
    [
        (lambda: RoIAlign(0), ValueError, "output_size"),
        (lambda: RoIAlign(7, spatial_scale=-1.0), ValueError, "spatial_scale"),
        (lambda: RoIAlign(7, sampling_ratio=2.0), TypeError, "sampling_ratio"),
        (lambda: PSRoIAlign(7, aligned=1), TypeError, "aligned"),
        (lambda: MultiLevelRoIAlign(7, strides=(4, 8, 32)), ValueError, "consecutive"),
        (lambda: MultiLevelRoIAlign(7, strides=[]), TypeError, "strides"),
        (lambda: MultiLevelRoIAlign(7, canonical_scale=0), ValueError, "canonical_scale"),
    ],
)
def test_constructor_errors(make, exc, words):
    with pytest.raises(exc, match=words):
        make()


def test_call_errors_name_the_argument():
    features, rois = _inputs(4)
    with pytest.raises(ValueError, match="multiple of"):
        PSRoIAlign(3)(features, rois)
    with pytest.raises(TypeError, match="dict"):
        MultiLevelRoIAlign(3, strides={"p2": 4})([features], rois)
    with pytest.raises(TypeError, match="list"):
        MultiLevelRoIAlign(3, strides=[4])({"p2": features}, rois)
    with pytest.raises(ValueError, match="lacks"):
        MultiLevelRoIAlign(3, strides={"p2": 4, "p3": 8})({"p2": features}, rois)
    with pytest.raises(ValueError, match="one per stride"):
        MultiLevelRoIAlign(3, strides=[4, 8])([features], rois)
