"""RoIPool: the Fast R-CNN RoI max pooling layer."""

from __future__ import annotations

import keras

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._roi_pool import roi_pool


@keras.saving.register_keras_serializable(package="kerasdet")
class RoIPool(RoILayerBase):
    """RoI max pooling (Fast R-CNN): a fixed `ph x pw` grid of maxima for every roi.

    Thin layer over `kerasdet.ops.roi_pool` (exact Caffe/torchvision quantisation, DESIGN.md §4): roi
    corners are scaled by `spatial_scale` and rounded half away from zero, the roi is split into integer
    bins `[floor(i * size / ph) + start, ceil((i + 1) * size / ph) + start)` (size `end - start + 1`),
    clipped to the map, and each output is the max over its bin (0 for an empty bin). Padded roi rows
    (all -1) give zeros. The gradient flows to each bin's argmax.

    Rois stay float32 whatever the dtype policy (they are not autocast); the features are cast to the
    layer's compute dtype and the output has that dtype. Runs under `jit_compile=True` when the feature
    map's height and width are static at trace time.

    A traced forward pass (`tf.function`, `predict`; no gradient tape) on a map whose height and width are
    known when traced runs as one XLA computation, compiled once per input shapes and level counts
    (about 2x faster than TensorFlow's ops on CPU); eager calls, training, maps of unknown size and
    exports made with `kerasdet.export.saved_model` run TensorFlow's ops, with identical results.

    Reference: R. Girshick, "Fast R-CNN", ICCV 2015.

    Args:
        output_size: int `k` (a `k x k` grid) or a pair `(ph, pw)`. Default 7.
        spatial_scale: feature-map pixels per input pixel, e.g. `1 / 16` for a stride-16 map.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        features: `[B, H, W, C]` feature map.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, ph, pw, C]` pooled features.

    Example:
        >>> layer = RoIPool(output_size=7, spatial_scale=1 / 16)
        >>> features = tf.random.normal([2, 38, 50, 512])
        >>> rois = tf.constant([[[0., 0., 320., 240.]] * 3] * 2)
        >>> layer(features, rois).shape
        TensorShape([2, 3, 7, 7, 512])
    """

    _roi_op = staticmethod(roi_pool)

    def __init__(self, output_size=7, spatial_scale=1.0, **kwargs):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale, **kwargs)
