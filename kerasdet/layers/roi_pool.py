"""RoIPool: the Fast R-CNN RoI max pooling layer."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.ops._roi_pool import _pair, _scale, roi_pool


@keras.saving.register_keras_serializable(package="kerasdet")
class RoIPool(keras.layers.Layer):
    """RoI max pooling (Fast R-CNN): a fixed `ph x pw` grid of maxima for every roi.

    Thin layer over `kerasdet.ops.roi_pool` (exact Caffe/torchvision quantisation, DESIGN.md §4): roi
    corners are scaled by `spatial_scale` and rounded half away from zero, the roi is split into integer
    bins `[floor(i * size / ph) + start, ceil((i + 1) * size / ph) + start)` (size `end - start + 1`),
    clipped to the map, and each output is the max over its bin (0 for an empty bin). Padded roi rows
    (all -1) give zeros. The gradient flows to each bin's argmax.

    Rois stay float32 whatever the dtype policy (they are not autocast); the features are cast to the
    layer's compute dtype and the output has that dtype. Runs under `jit_compile=True` when the feature
    map's height and width are static at trace time.

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

    def __init__(self, output_size=7, spatial_scale=1.0, **kwargs):
        super().__init__(**kwargs)
        ph, pw = _pair(output_size)
        self.output_size = output_size if isinstance(output_size, int) else (ph, pw)
        self.spatial_scale = _scale(spatial_scale)
        # rois must reach the op in float32: keep Keras from autocasting them to float16 (and from
        # rejecting numpy inputs, which it would convert); `call` casts each input itself
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def call(self, features, rois):
        features = tf.cast(features, self.compute_dtype)
        rois = tf.cast(rois, tf.float32)
        return roi_pool(features, rois, self.output_size, self.spatial_scale)

    def compute_output_shape(self, features_shape, rois_shape):
        ph, pw = _pair(self.output_size)
        batch = rois_shape[0] if rois_shape[0] is not None else features_shape[0]
        return (batch, rois_shape[1], ph, pw, features_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size, "spatial_scale": self.spatial_scale})
        return config
