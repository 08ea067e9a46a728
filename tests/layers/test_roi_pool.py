"""RoIPool, PSRoIPool and SpatialPyramidPool through the layer harness, and against the references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.layers.ps_roi_pool import PSRoIPool
from kerasdet.layers.roi_pool import RoIPool
from kerasdet.layers.spatial_pyramid_pool import SpatialPyramidPool
from tests.layers.harness import check_layer, roi_empty_args, roi_empty_check
from tests.ops.test_roi_pool import random_rois
from tests.reference import roi_pool as ref


def _inputs(channels, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2, 10, 12, channels)).astype(np.float32)
    # off-grid corners: float16 rounding of the rois (which the layers must not do) would move bins
    rois = random_rois(rng, 2, 6, 10 * 8, 12 * 8) + np.float32(0.3)
    rois[0, 1] = -1.0
    return features, rois


@pytest.mark.parametrize("output_size", [7, (3, 2)])
def test_roi_pool_layer(output_size):
    features, rois = _inputs(4)
    check_layer(
        RoIPool,
        {"output_size": output_size, "spatial_scale": 0.125},
        (features, rois),
        empty_args=roi_empty_args(features, rois),
        empty_check=roi_empty_check(((7, 7) if output_size == 7 else output_size) + (4,)),
    )
    out = RoIPool(output_size, spatial_scale=0.125)(features, rois)
    np.testing.assert_allclose(out, ref.roi_pool(features, rois, output_size, 0.125), atol=1e-4)


def test_ps_roi_pool_layer():
    features, rois = _inputs(3 * 4)
    check_layer(
        PSRoIPool,
        {"output_size": (2, 2), "spatial_scale": 0.125},
        (features, rois),
        empty_args=roi_empty_args(features, rois),
        empty_check=roi_empty_check((2, 2, 3)),
    )
    out = PSRoIPool((2, 2), spatial_scale=0.125)(features, rois)
    np.testing.assert_allclose(out, ref.ps_roi_pool(features, rois, (2, 2), 0.125), atol=1e-4)


def test_spatial_pyramid_pool_layer():
    features, rois = _inputs(3)
    check_layer(
        SpatialPyramidPool,
        {"levels": (1, 2, 3), "spatial_scale": 0.125},
        (features, rois),
        empty_args=roi_empty_args(features, rois),
        empty_check=roi_empty_check((14 * 3,)),
    )
    out = SpatialPyramidPool((1, 2, 3), spatial_scale=0.125)(features, rois)
    np.testing.assert_allclose(out, ref.spatial_pyramid_pool(features, rois, (1, 2, 3), 0.125), atol=1e-4)


@pytest.mark.parametrize(
    "layer_cls,channels,reference",
    [
        (RoIPool, 4, lambda f, r: ref.roi_pool(f, r, 3, 0.125)),
        (PSRoIPool, 9, lambda f, r: ref.ps_roi_pool(f, r, 3, 0.125)),
    ],
)
def test_rois_are_not_autocast_under_mixed_float16(layer_cls, channels, reference):
    """float16 rois would round 1000.3 to 1000.5 and move the bins; the layers keep them float32."""
    keras.config.set_dtype_policy("mixed_float16")
    layer = layer_cls(3, spatial_scale=0.125)
    keras.config.set_dtype_policy("float32")
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1, 140, 140, channels)).astype(np.float32)
    rois = np.array([[[1000.3, 1003.9, 1100.2, 1090.1], [4.0, 1001.0, 1011.9, 1050.0]]], np.float32)
    out = layer(features, rois)
    assert out.dtype == tf.float16
    expected = reference(features.astype(np.float16).astype(np.float32), rois)
    np.testing.assert_allclose(out.numpy().astype(np.float32), expected, atol=2e-3)


def test_unknown_map_size_in_a_functional_model():
    features, rois = _inputs(4)
    f_in = keras.Input(shape=(None, None, 4))
    r_in = keras.Input(shape=(None, 4))
    out = RoIPool(3, spatial_scale=0.125)(f_in, r_in)
    assert tuple(out.shape) == (None, None, 3, 3, 4)
    model = keras.Model([f_in, r_in], out)
    expected = ref.roi_pool(features, rois, 3, 0.125)
    np.testing.assert_allclose(model.predict([features, rois], verbose=0), expected, atol=1e-4)


def test_layer_arguments_are_checked_at_construction():
    with pytest.raises(ValueError, match="output_size"):
        RoIPool(output_size=(7, 0))
    with pytest.raises(TypeError, match="spatial_scale"):
        PSRoIPool(spatial_scale=None)
    with pytest.raises(ValueError, match="levels"):
        SpatialPyramidPool(levels=[])
    with pytest.raises(ValueError, match="divisible"):
        PSRoIPool(3)(keras.Input(shape=(8, 8, 10)), keras.Input(shape=(5, 4)))
