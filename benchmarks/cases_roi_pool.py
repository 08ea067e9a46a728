"""Timing cases for exact RoI pooling (RoIPool, PSRoIPool) beside `tf.image.crop_and_resize` + pooling.

The peer is the usual TensorFlow approximation (TF Object Detection API style): bilinear crops of
`2 * output_size` per side, then a 2x2 max (or average) pool. It is not the same computation (bilinear
samples instead of exact integer bins), so the ratio is recorded with no limit. Both sides run in a
`tf.function` on the same inputs and block with `.numpy()`.

Example:
    >>> from benchmarks.timing import compare
    >>> rows = [compare(case) for case in cases()]
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from benchmarks.timing import Case
from kerasdet.layers.ps_roi_pool import PSRoIPool
from kerasdet.layers.roi_pool import RoIPool
from kerasdet.ops._roi_pool import without_fused_kernel

IMAGE = 1024  # input-image pixels per side
STRIDE = 16  # so the feature map is 64 x 64
NUM_ROIS = 512
OUTPUT = 7
ROI_POOL_LIMIT = 1.2  # issue 14


def _rois(rng) -> np.ndarray:
    """`[1, NUM_ROIS, 4]` xyxy boxes, 16 to 400 px per side, inside the image."""
    x1 = rng.uniform(0, IMAGE - 16, NUM_ROIS)
    y1 = rng.uniform(0, IMAGE - 16, NUM_ROIS)
    x2 = np.minimum(x1 + rng.uniform(16, 400, NUM_ROIS), IMAGE)
    y2 = np.minimum(y1 + rng.uniform(16, 400, NUM_ROIS), IMAGE)
    return np.stack([x1, y1, x2, y2], -1)[None].astype(np.float32)


def _crop_boxes(rois: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    """crop_and_resize's normalised `[N, 4]` yxyx boxes and their batch indices."""
    x1, y1, x2, y2 = np.moveaxis(rois[0] / IMAGE, -1, 0)
    boxes = tf.constant(np.stack([y1, x1, y2, x2], -1), tf.float32)
    return boxes, tf.zeros([NUM_ROIS], tf.int32)


def _roi_pool_functions(fused: bool):
    """`(ours, peer)` zero-argument tf.functions on the RoIPool case's inputs; `fused=False` traces ours with
    TensorFlow's ops only (the path of gradients, maps of unknown size and exports)."""
    rng = np.random.default_rng(0)
    features = tf.constant(rng.normal(size=(1, IMAGE // STRIDE, IMAGE // STRIDE, 256)).astype(np.float32))
    rois = tf.constant(_rois(rng))
    boxes, box_indices = _crop_boxes(rois.numpy())
    layer = RoIPool(OUTPUT, spatial_scale=1.0 / STRIDE)
    ours_fn = tf.function(lambda: layer(features, rois))
    if not fused:
        with without_fused_kernel():
            ours_fn.get_concrete_function()  # traced once here; later calls reuse this graph

    @tf.function
    def peer_fn():
        crops = tf.image.crop_and_resize(features, boxes, box_indices, (2 * OUTPUT, 2 * OUTPUT))
        return tf.nn.max_pool2d(crops, 2, 2, "VALID")

    return ours_fn, peer_fn


def _roi_pool_case(fused: bool) -> Case:
    ours_fn, peer_fn = _roi_pool_functions(fused)
    name = f"RoIPool {NUM_ROIS} rois, 64x64x256, {OUTPUT}x{OUTPUT}"
    if fused:
        first_ms = {}
        for side, fn in (("ours", ours_fn), ("peer", peer_fn)):  # tracing, and for ours XLA's compilation
            start = time.perf_counter()
            fn().numpy()
            first_ms[side] = (time.perf_counter() - start) * 1e3
        note = (
            "exact Fast R-CNN integer bins (sparse table) vs bilinear crops + max pool; different results by design. "
            "Ours is the forward pass of a map of known size, which runs as one XLA computation: its first call "
            f"(tracing and compilation) took {first_ms['ours']:.0f} ms against the peer's {first_ms['peer']:.0f} ms, "
            f"{(first_ms['ours'] - first_ms['peer']) / 100:.1f} ms more per call amortised over 100 calls; gradients, "
            "maps of unknown size and exports run TensorFlow's ops (the next row)"
        )
    else:
        name += ", TensorFlow's ops only"
        note = ("recorded only: the rois of the case above through `without_fused_kernel()` (as gradients, maps of "
                "unknown size and exports run)")
    return Case(
        name=name,
        ours=lambda: ours_fn().numpy(),
        peer=lambda: peer_fn().numpy(),
        peer_name="tf.image.crop_and_resize 14x14 + max_pool 2x2",
        limit=ROI_POOL_LIMIT if fused else None,
        note=note,
    )


def _ps_roi_pool_case() -> Case:
    rng = np.random.default_rng(1)
    bins = OUTPUT * OUTPUT
    features = tf.constant(rng.normal(size=(1, IMAGE // STRIDE, IMAGE // STRIDE, 8 * bins)).astype(np.float32))
    rois = tf.constant(_rois(rng))
    boxes, box_indices = _crop_boxes(rois.numpy())
    layer = PSRoIPool(OUTPUT, spatial_scale=1.0 / STRIDE)
    # bin (i, j) of output channel d reads input channel d * 49 + i * 7 + j
    select = tf.constant(np.eye(bins, dtype=np.float32).reshape(OUTPUT, OUTPUT, 1, bins))

    ours_fn = tf.function(lambda: layer(features, rois))

    @tf.function
    def peer_fn():
        crops = tf.image.crop_and_resize(features, boxes, box_indices, (2 * OUTPUT, 2 * OUTPUT))
        pooled = tf.nn.avg_pool2d(crops, 2, 2, "VALID")  # [N, 7, 7, 8 * 49]
        pooled = tf.reshape(pooled, [NUM_ROIS, OUTPUT, OUTPUT, 8, bins])
        return tf.reduce_sum(pooled * select, axis=-1)

    return Case(
        name=f"PSRoIPool {NUM_ROIS} rois, 64x64x(8*49), {OUTPUT}x{OUTPUT}",
        ours=lambda: ours_fn().numpy(),
        peer=lambda: peer_fn().numpy(),
        peer_name="tf.image.crop_and_resize 14x14 + avg_pool 2x2 + channel select",
        note="exact R-FCN integer-bin means (float64 summed-area table) vs bilinear crops; different results by design",
    )


def cases() -> list[Case]:
    """The RoI pooling timing cases."""
    return [_roi_pool_case(fused=True), _roi_pool_case(fused=False), _ps_roi_pool_case()]
