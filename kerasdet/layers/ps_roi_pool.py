"""PSRoIPool: the R-FCN position-sensitive RoI pooling layer."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.ops._roi_pool import _pair, _scale, ps_roi_pool


@keras.saving.register_keras_serializable(package="kerasdet")
class PSRoIPool(keras.layers.Layer):
    """Position-sensitive RoI pooling (R-FCN): bin `(i, j)` reads its own group of score maps.

    Thin layer over `kerasdet.ops.ps_roi_pool` (torchvision semantics, DESIGN.md §4): roi corners are
    scaled by `spatial_scale` and rounded half away from zero, the roi (size `max(end - start, 1)`) is
    split into the integer bins of RoI pooling, and output bin `(i, j)` of channel `d` is the mean of
    input channel `d * ph * pw + i * pw + j` over the bin (0 for an empty bin). The input needs
    `C = D * ph * pw` channels; the output has `D`. Padded roi rows (all -1) give zeros. Means are exact
    (float64 summed-area table).

    Rois stay float32 whatever the dtype policy (they are not autocast); the features are cast to the
    layer's compute dtype and the output has that dtype. Runs under `jit_compile=True`.

    Reference: J. Dai, Y. Li, K. He, J. Sun, "R-FCN: Object Detection via Region-based Fully
    Convolutional Networks", NeurIPS 2016.

    Args:
        output_size: int `k` (a `k x k` grid) or a pair `(ph, pw)`. Default 7.
        spatial_scale: feature-map pixels per input pixel, e.g. `1 / 16`.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        features: `[B, H, W, D * ph * pw]` position-sensitive score maps.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, ph, pw, D]`.

    Example:
        >>> layer = PSRoIPool(output_size=7, spatial_scale=1 / 16)
        >>> scores = tf.random.normal([1, 38, 50, 21 * 49])  # 21 classes
        >>> layer(scores, tf.constant([[[16., 16., 320., 240.]]])).shape
        TensorShape([1, 1, 7, 7, 21])
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
        return ps_roi_pool(features, rois, self.output_size, self.spatial_scale)

    def compute_output_shape(self, features_shape, rois_shape):
        ph, pw = _pair(self.output_size)
        channels = features_shape[-1]
        if channels is not None and channels % (ph * pw) != 0:
            raise ValueError(
                f"`features` channels must be divisible by ph * pw = {ph * pw} for PSRoIPool; "
                f"got features shape {tuple(features_shape)}"
            )
        batch = rois_shape[0] if rois_shape[0] is not None else features_shape[0]
        depth = None if channels is None else channels // (ph * pw)
        return (batch, rois_shape[1], ph, pw, depth)

    def get_config(self):
        config = super().get_config()
        config.update({"output_size": self.output_size, "spatial_scale": self.spatial_scale})
        return config
