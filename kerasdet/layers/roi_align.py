"""RoIAlign: the Mask R-CNN RoI feature extractor with bilinear sampling."""

from __future__ import annotations

import keras

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._roi_align import roi_align


@keras.saving.register_keras_serializable(package="kerasdet")
class RoIAlign(RoILayerBase):
    """RoIAlign (Mask R-CNN): a `ph x pw` grid of bilinearly sampled, averaged features for every roi.

    Thin layer over `kerasdet.ops.roi_align`, with torchvision / Detectron2 semantics (DESIGN.md §4):
    roi corners are scaled by `spatial_scale` (and shifted by -0.5 with `aligned=True`); each bin averages
    `sampling_ratio x sampling_ratio` points (adaptive `ceil(roi_size / output_size)` when
    `sampling_ratio <= 0`) read by bilinear interpolation that clamps to the border pixel within one pixel
    of the map and gives 0 beyond it. Padded roi rows (all -1) give zeros. Differentiable w.r.t. the
    features.

    Rois stay float32 whatever the dtype policy (they are not autocast); the features are cast to the
    layer's compute dtype, sampled in float32, and the output has the compute dtype.

    Not XLA-compilable: the op is built on `tf.image.crop_and_resize`, which has no XLA kernel, so the
    layer does not run under `tf.function(jit_compile=True)`; it sets `supports_jit = False`, so
    `model.compile(jit_compile="auto")` (the Keras default) leaves models that contain it un-jitted.

    Reference: K. He, G. Gkioxari, P. Dollár, R. Girshick, "Mask R-CNN", ICCV 2017.

    Args:
        output_size: int `k` (a `k x k` grid) or a pair `(ph, pw)`. Default 7.
        spatial_scale: feature-map pixels per input pixel, e.g. `1 / 16` for a stride-16 map.
        sampling_ratio: points per bin side; `<= 0` for adaptive sampling. Default 2 (torchvision's
            Mask R-CNN; Detectron2 uses 0).
        aligned: pixel-centre alignment (Detectron2's `ROIAlignV2`, default True); False reproduces the
            original Mask R-CNN, with rois grown to at least one feature pixel.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`...).

    Call arguments:
        features: `[B, H, W, C]` feature map.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, ph, pw, C]` pooled features.

    Example:
        >>> layer = RoIAlign(output_size=7, spatial_scale=1 / 16)
        >>> features = tf.random.normal([2, 38, 50, 256])
        >>> rois = tf.constant([[[0., 0., 320., 240.]] * 3] * 2)
        >>> layer(features, rois).shape
        TensorShape([2, 3, 7, 7, 256])
    """

    _roi_op = staticmethod(roi_align)
    _config_keys = ("output_size", "spatial_scale", "sampling_ratio", "aligned")

    def __init__(self, output_size=7, spatial_scale=1.0, sampling_ratio=2, aligned=True, **kwargs):
        super().__init__(output_size=output_size, spatial_scale=spatial_scale, **kwargs)
        self._set_sampling(sampling_ratio, aligned)
