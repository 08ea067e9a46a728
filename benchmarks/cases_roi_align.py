"""Timing cases for RoIAlign and position-sensitive RoIAlign (kerasdet.ops._roi_align).

RoIAlign of 512 rois on a 64 x 64 x 256 map to 7 x 7 bins with 2 x 2 points per bin (rois inside the image,
and rois centred anywhere in it, so that many cross its border), against the
usual TensorFlow approximation of it: `tf.image.crop_and_resize` to 14 x 14 followed by a 2 x 2 average
pool (which samples the box corners instead of the bin centres and knows neither `aligned` nor the
torchvision border rules). Adaptive sampling (`sampling_ratio=0`, Detectron2's default) and
position-sensitive RoIAlign (7 x 7 bins, D = 8, 392 input channels, against the peer on the 392-channel
map) are recorded beside it for scale.

Both sides run in `tf.function` with fixed seeds and block on `.numpy()`.

Example:
    >>> from benchmarks.timing import compare
    >>> rows = [compare(case) for case in cases()]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from benchmarks.timing import Case
from kerasdet.ops._roi_align import ps_roi_align, roi_align

_IMAGE = 1024  # input pixels; the map has stride 16
_STRIDE = 16


def _rois(rng, count):
    """Random boxes inside the image, 32 to 512 pixels per side, `[1, count, 4]` xyxy."""
    size = rng.uniform(32, 512, size=(count, 2))
    start = rng.uniform(0, 1, size=(count, 2)) * (_IMAGE - size)
    return np.concatenate([start, start + size], axis=1)[None].astype(np.float32)


def _rois_across_border(rng, count):
    """Random boxes of 32 to 512 pixels per side centred anywhere in the image, so that many cross its border."""
    size = rng.uniform(32, 512, size=(count, 2))
    centre = rng.uniform(0, _IMAGE, size=(count, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1)[None].astype(np.float32)


def _crossing_share(rois):
    """The share of rois with a corner outside the image."""
    r = rois[0]
    return float(np.mean((r < 0).any(-1) | (r > _IMAGE).any(-1)))


def _peer(features, rois, bins, sampling):
    """crop_and_resize to (bins * sampling)^2 then an average pool, boxes normalised to the map."""
    size = float(_IMAGE)
    x1, y1, x2, y2 = tf.unstack(rois[0], axis=-1)
    boxes = tf.stack([y1 / size, x1 / size, y2 / size, x2 / size], axis=-1)
    indices = tf.zeros(tf.shape(boxes)[:1], tf.int32)
    crops = tf.image.crop_and_resize(features, boxes, indices, [bins * sampling, bins * sampling])
    return tf.nn.avg_pool2d(crops, ksize=sampling, strides=sampling, padding="VALID")


def _case(name, features, rois, ours_fn, limit, note):
    ours = tf.function(ours_fn)
    peer = tf.function(lambda f, r: _peer(f, r, 7, 2))
    return Case(
        name=name,
        ours=lambda: ours(features, rois).numpy(),
        peer=lambda: peer(features, rois).numpy(),
        peer_name="tf.image.crop_and_resize 14x14 + 2x2 avg_pool2d",
        limit=limit,
        note=note,
    )


def cases() -> list[Case]:
    """The RoIAlign timing cases (forward, CPU or whatever device TensorFlow places them on)."""
    rng = np.random.default_rng(0)
    side = _IMAGE // _STRIDE
    features = tf.constant(rng.normal(size=(1, side, side, 256)).astype(np.float32))
    ps_features = tf.constant(rng.normal(size=(1, side, side, 8 * 7 * 7)).astype(np.float32))
    rois = tf.constant(_rois(rng, 512))
    crossing = _rois_across_border(rng, 512)
    share = _crossing_share(crossing)
    on_end = crossing.copy()
    on_end[0, 0] = [-16.0, 100.0, 208.0, 300.0]  # aligned, 1/16: its first column of samples lies exactly on x = -1
    return [
        _case(
            "RoIAlign 512 rois, 64x64x256, 7x7, sampling 2",
            features,
            rois,
            lambda f, r: roi_align(f, r, 7, spatial_scale=1.0 / _STRIDE, sampling_ratio=2, aligned=True),
            1.2,
            "exact torchvision semantics (aligned=True); the peer is the usual approximation; every roi inside",
        ),
        _case(
            "RoIAlign 512 rois across the border, 64x64x256, 7x7, sampling 2",
            features,
            tf.constant(crossing),
            lambda f, r: roi_align(f, r, 7, spatial_scale=1.0 / _STRIDE, sampling_ratio=2, aligned=True),
            1.2,
            f"{share:.0%} of the rois cross the image border (exact zeros beyond it; the peer extrapolates 0 "
            "from the map's edge)",
        ),
        _case(
            "RoIAlign 512 rois across the border, one with samples on -1, 64x64x256, 7x7, sampling 2",
            features,
            tf.constant(on_end),
            lambda f, r: roi_align(f, r, 7, spatial_scale=1.0 / _STRIDE, sampling_ratio=2, aligned=True),
            None,
            "recorded only: the rois of the case above, one of them with samples exactly on the range end -1, which "
            "takes the masked path (a second crop of that roi, and its bins written into the output)",
        ),
        _case(
            "RoIAlign 512 rois, 64x64x256, 7x7, adaptive sampling (0)",
            features,
            rois,
            lambda f, r: roi_align(f, r, 7, spatial_scale=1.0 / _STRIDE, sampling_ratio=0, aligned=True),
            None,
            "recorded only; ceil(roi_size / 7) points per bin side (1 to 5 here, 2 for the peer)",
        ),
        _case(
            "PS-RoIAlign 512 rois, 64x64x392 (D=8), 7x7, sampling 2",
            ps_features,
            rois,
            lambda f, r: ps_roi_align(f, r, 7, spatial_scale=1.0 / _STRIDE, sampling_ratio=2, aligned=True),
            None,
            "recorded only; the peer pools all 392 channels, PS-RoIAlign returns 8",
        ),
    ]


if __name__ == "__main__":
    from benchmarks.timing import compare, machine_description, markdown_table

    print(machine_description())
    print(markdown_table([compare(c) for c in cases()]))
