"""PSRoIAlign: position-sensitive RoIAlign for R-FCN score maps."""

from __future__ import annotations

import keras

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._roi_align import ps_roi_align


@keras.saving.register_keras_serializable(package="kerasdet")
class PSRoIAlign(RoILayerBase):
    """Position-sensitive RoIAlign: R-FCN's position-sensitive pooling with RoIAlign bins.

    Thin layer over `kerasdet.ops.ps_roi_align`. The input has `D * ph * pw` channels; output bin
    `(i, j)` of channel `d` is the RoIAlign bin `(i, j)` (sampling as in `RoIAlign`, torchvision
    semantics) of input channel `d * ph * pw + i * pw + j`. Padded roi rows (all -1) give zeros.
    Differentiable w.r.t. the features.

    Rois stay float32 whatever the dtype policy; features are cast to the compute dtype, sampled in
    float32, and the output has the compute dtype.

    Not XLA-compilable: built on `tf.image.crop_and_resize`, which has no XLA kernel, so it does not run
    under `tf.function(jit_compile=True)`; `supports_jit = False` keeps `jit_compile="auto"` models
    un-jitted.

    Reference: J. Dai, Y. Li, K. He, J. Sun, "R-FCN: Object Detection via Region-based Fully
    Convolutional Networks", NIPS 2016; RoIAlign from K. He et al., "Mask R-CNN", ICCV 2017.

    Args:
        output_size: int `k` (a `k x k` grid) or a pair `(ph, pw)`. Default 7.
        spatial_scale: feature-map pixels per input pixel.
        sampling_ratio: points per bin side; `<= 0` for adaptive sampling. Default 2.
        aligned: pixel-centre alignment (default True, torchvision's `ps_roi_align`).
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        features: `[B, H, W, D * ph * pw]` position-sensitive score maps.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, ph, pw, D]`.

    Example:
        >>> layer = PSRoIAlign(output_size=3, spatial_scale=1 / 16)
        >>> scores = tf.random.normal([1, 38, 50, 21 * 9])
        >>> layer(scores, tf.constant([[[0., 0., 320., 240.]]])).shape
        TensorShape([1, 1, 3, 3, 21])
    """

    _position_sensitive = True
    _roi_op = staticmethod(ps_roi_align)
    _config_keys = ("output_size", "spatial_scale", "sampling_ratio", "aligned")

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=2, aligned=True, **kwargs):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale, **kwargs)
        self._set_sampling(sampling_ratio, aligned)
