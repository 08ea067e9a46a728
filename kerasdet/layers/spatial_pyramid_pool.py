"""SpatialPyramidPool: the SPP-net pyramid of RoI max pooling grids."""

from __future__ import annotations

import keras

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._checks import positive_ints
from kerasdet.ops._roi_pool import spatial_pyramid_pool


@keras.saving.register_keras_serializable(package="kerasdet")
class SpatialPyramidPool(RoILayerBase):
    """Spatial pyramid pooling of rois (SPP-net): one fixed-length vector per roi, whatever its size.

    Thin layer over `kerasdet.ops.spatial_pyramid_pool`: for each level `l` (in the order given) the roi is
    max pooled over the `l x l` integer bins of RoI pooling (Fast R-CNN quantisation, DESIGN.md §4), the
    `[l, l, C]` grid is flattened with channels fastest, then columns, then rows, and the levels are
    concatenated. Padded roi rows (all -1) give zeros.

    Rois stay float32 whatever the dtype policy (they are not autocast); the features are cast to the
    layer's compute dtype and the output has that dtype. Runs under `jit_compile=True` when the feature
    map's height and width are static at trace time.

    A traced forward pass (`tf.function`, `predict`; no gradient tape) on a map whose height and width are
    known when traced runs as one XLA computation, compiled once per input shapes and level counts
    (about 2x faster than TensorFlow's ops on CPU); eager calls, training, maps of unknown size and
    exports made with `kerasdet.export.saved_model` run TensorFlow's ops, with identical results.

    Reference: K. He, X. Zhang, S. Ren, J. Sun, "Spatial Pyramid Pooling in Deep Convolutional Networks
    for Visual Recognition", ECCV 2014.

    Args:
        levels: bins per side of each pyramid level, default `(1, 2, 4)` (the paper's detection setting
            is `(1, 2, 3, 6)`).
        spatial_scale: feature-map pixels per input pixel, e.g. `1 / 16`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        features: `[B, H, W, C]` feature map.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, sum(l * l for l in levels) * C]`.

    Example:
        >>> layer = SpatialPyramidPool(levels=(1, 2, 4), spatial_scale=1 / 16)
        >>> features = tf.random.normal([1, 38, 50, 256])
        >>> layer(features, tf.constant([[[0., 0., 320., 240.]]])).shape
        TensorShape([1, 1, 5376])
    """

    _roi_op = staticmethod(spatial_pyramid_pool)
    _config_keys = ("levels", "spatial_scale")

    def __init__(self, levels=(1, 2, 4), spatial_scale=1.0, **kwargs):
        levels = positive_ints(levels, "levels")
        super().__init__(spatial_scale=spatial_scale, **kwargs)
        self.levels = levels

    def compute_output_shape(self, features_shape, rois_shape):
        channels = features_shape[-1]
        size = None if channels is None else sum(lv * lv for lv in self.levels) * channels
        return (self._batch_dim(features_shape, rois_shape), rois_shape[1], size)

    def get_config(self):
        config = super().get_config()
        config["levels"] = list(self.levels)
        return config
