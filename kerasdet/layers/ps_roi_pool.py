"""PSRoIPool: the R-FCN position-sensitive RoI pooling layer."""

from __future__ import annotations

import keras

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._roi_pool import ps_roi_pool


@keras.saving.register_keras_serializable(package="kerasdet")
class PSRoIPool(RoILayerBase):
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

    _position_sensitive = True
    _roi_op = staticmethod(ps_roi_pool)

    def __init__(self, output_size=7, spatial_scale=1.0, **kwargs):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale, **kwargs)
