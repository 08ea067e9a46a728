"""MultiLevelRoIAlign: RoIAlign over a feature pyramid, each roi read from the level its size picks."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.layers._roi_layer import RoILayerBase
from kerasdet.ops._checks import output_size_pair
from kerasdet.ops._roi_align import _check_canonical, _levels_of_strides, multilevel_roi_align


@keras.saving.register_keras_serializable(package="kerasdet")
class MultiLevelRoIAlign(RoILayerBase):
    """RoIAlign over an FPN (Mask R-CNN with FPN): each roi is pooled from one pyramid level.

    Thin layer over `kerasdet.ops.multilevel_roi_align`. A roi of `w x h` input pixels goes to level
    `floor(canonical_level + log2(sqrt(w * h) / canonical_scale))` (FPN eq. 1: `4 + log2(sqrt(wh)/224)`),
    clamped to the levels given; the map with stride `2**k` is level `k` and is read by RoIAlign with
    `spatial_scale = 1 / 2**k`. The output keeps the rois' order. Padded roi rows (all -1) give zeros.

    The maps come as a list (in the order of `strides`, a list) or as a dict (keys of `strides`, a
    dict; other keys such as an RPN-only `"P6"` are ignored). All maps must have the same channels.

    Rois stay float32 whatever the dtype policy; features are cast to the compute dtype, sampled in
    float32, and the output has the compute dtype.

    Not XLA-compilable: built on `tf.image.crop_and_resize` (no XLA kernel) and on a data-dependent
    partition of the rois by level, so it does not run under `tf.function(jit_compile=True)`;
    `supports_jit = False` keeps `jit_compile="auto"` models un-jitted.

    Reference: T.-Y. Lin, P. Dollár, R. Girshick, K. He, B. Hariharan, S. Belongie, "Feature Pyramid
    Networks for Object Detection", CVPR 2017; K. He et al., "Mask R-CNN", ICCV 2017.

    Args:
        output_size: int `k` or a pair `(ph, pw)`. Default 7.
        strides: the levels' strides, consecutive powers of two: a list matched to a list of maps, or a
            dict `{name: stride}` matched to a dict of maps. Default `[4, 8, 16, 32]` (P2-P5).
        sampling_ratio: points per bin side; `<= 0` for adaptive sampling. Default 2.
        aligned: pixel-centre alignment (default True).
        canonical_scale: the roi size assigned to `canonical_level`. Default 224.
        canonical_level: the level of a `canonical_scale` roi. Default 4.
        **kwargs: `keras.layers.Layer` arguments.

    Call arguments:
        features: list or dict of `[B, H_k, W_k, C]` maps.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.

    Returns:
        `[B, R, ph, pw, C]` in the rois' order.

    Example:
        >>> layer = MultiLevelRoIAlign(output_size=7, strides={"P2": 4, "P3": 8, "P4": 16, "P5": 32})
        >>> maps = {f"P{k}": tf.random.normal([1, 256 // 2**k, 256 // 2**k, 64]) for k in range(2, 7)}
        >>> layer(maps, tf.constant([[[0., 0., 40., 60.], [10., 10., 250., 200.]]])).shape
        TensorShape([1, 2, 7, 7, 64])
    """

    _config_keys = ("output_size", "strides", "sampling_ratio", "aligned", "canonical_scale", "canonical_level")

    def __init__(
        self,
        output_size=7,
        strides=(4, 8, 16, 32),
        sampling_ratio=2,
        aligned=True,
        canonical_scale=224.0,
        canonical_level=4,
        **kwargs,
    ):
        super().__init__(output_size=output_size, **kwargs)
        self._set_sampling(sampling_ratio, aligned)
        if isinstance(strides, dict):
            if not strides or not all(isinstance(k, str) for k in strides):
                raise TypeError(f"`strides` as a dict must map map names (str) to strides; got {strides!r}")
            values = list(strides.values())
        elif isinstance(strides, (list, tuple)) and strides:
            values = list(strides)
        else:
            raise TypeError(
                f"`strides` must be a non-empty list or dict of strides; got {type(strides).__name__} {strides!r}"
            )
        _levels_of_strides(values)
        _check_canonical(canonical_scale, canonical_level)
        if isinstance(strides, dict):
            self.strides = {k: int(v) for k, v in strides.items()}
        else:
            self.strides = [int(v) for v in values]
        self.canonical_scale = float(canonical_scale)
        self.canonical_level = canonical_level

    def _maps_in_order(self, features):
        """The maps as a list aligned with `self.strides` (values, for a dict)."""
        if isinstance(self.strides, dict):
            if not isinstance(features, dict):
                raise TypeError(
                    f"`features` must be a dict with keys {list(self.strides)} (the layer's strides are a dict); "
                    f"got {type(features).__name__}"
                )
            missing = [k for k in self.strides if k not in features]
            if missing:
                raise ValueError(f"`features` lacks the maps {missing}; it has keys {list(features)}")
            return [features[k] for k in self.strides], list(self.strides.values())
        if isinstance(features, dict) or not isinstance(features, (list, tuple)):
            raise TypeError(
                f"`features` must be a list of {len(self.strides)} maps (the layer's strides are a list); "
                f"got {type(features).__name__}"
            )
        if len(features) != len(self.strides):
            raise ValueError(
                f"`features` must hold {len(self.strides)} maps, one per stride {self.strides}; got {len(features)}"
            )
        return list(features), list(self.strides)

    def call(self, features, rois):
        maps, strides = self._maps_in_order(features)
        maps = [tf.cast(m, self.compute_dtype) for m in maps]
        rois = tf.cast(rois, tf.float32)
        return multilevel_roi_align(
            maps,
            rois,
            self.output_size,
            strides,
            sampling_ratio=self.sampling_ratio,
            aligned=self.aligned,
            canonical_scale=self.canonical_scale,
            canonical_level=self.canonical_level,
        )

    def compute_output_shape(self, features_shape, rois_shape):
        ph, pw = output_size_pair(self.output_size)
        shapes, _ = self._maps_in_order(features_shape)
        return (self._batch_dim(shapes[0], rois_shape), rois_shape[1], ph, pw, shapes[0][-1])
