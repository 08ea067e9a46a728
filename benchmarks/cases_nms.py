"""Timing cases for kerasdet.ops.nms against TensorFlow's own NMS ops.

Inputs: fixed seed, boxes with uniform random centres on a 1000 x 1000 px image and sides of
10-200 px, uniform random scores. Both sides are `tf.function`s built and traced before timing;
each call fetches its outputs with `.numpy()`.

- single-class NMS (1k, 5k, 20k boxes, at most 1000 kept, IoU 0.5; and 20k boxes with at most 100 kept, the
  final-detection case) vs `tf.image.non_max_suppression`;
- batched per-class NMS (batch 8, 5k boxes, 20 classes, score threshold 0.05, 100 per class,
  100 per image) vs `tf.image.combined_non_max_suppression` (boxes `[B, N, 1, 4]`,
  `clip_boxes=False`). The peer breaks score ties in an unspecified order; ours is exact.
- batched per-class NMS on a trained detector's candidates (the zoo's RetinaNet on 8 embedded test
  images), the load a detector's postprocessing gives it, against the same peer.

Example:
    >>> from benchmarks.timing import compare
    >>> rows = [compare(case) for case in cases()]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from benchmarks.timing import Case
from kerasdet.ops.nms import batched_non_max_suppression, non_max_suppression

IMAGE_SIZE = 1000.0


def _boxes(rng, shape):
    centre = rng.uniform(0, IMAGE_SIZE, shape + (2,))
    size = rng.uniform(10, 200, shape + (2,))
    return tf.constant(np.concatenate([centre - size / 2, centre + size / 2], -1).astype(np.float32))


def _fetch(fn, *args):
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), fn(*args))


def _single_case(rng, num_boxes, limit=None, max_output_size=1000):
    boxes = _boxes(rng, (num_boxes,))
    scores = tf.constant(rng.uniform(size=num_boxes).astype(np.float32))
    ours = tf.function(lambda b, s: non_max_suppression(b, s, iou_threshold=0.5, max_output_size=max_output_size))
    peer = tf.function(lambda b, s: tf.image.non_max_suppression(b, s, max_output_size, iou_threshold=0.5))
    return Case(
        name=f"single-class NMS, {num_boxes} boxes, at most {max_output_size} kept",
        ours=_fetch(ours, boxes, scores),
        peer=_fetch(peer, boxes, scores),
        peer_name="tf.image.non_max_suppression",
        limit=limit,
        note="IoU 0.5, no score threshold" if num_boxes == 1000 else "",
    )


def _batched_case(rng, batch=8, num_boxes=5000, classes=20, per_class=100, total=100):
    boxes = _boxes(rng, (batch, num_boxes))
    scores = tf.constant(rng.uniform(size=(batch, num_boxes, classes)).astype(np.float32))
    settings = dict(iou_threshold=0.5, score_threshold=0.05)

    @tf.function
    def ours(b, s):
        return batched_non_max_suppression(b, s, max_detections=total, max_detections_per_class=per_class, **settings)

    @tf.function
    def peer(b, s):
        return tf.image.combined_non_max_suppression(
            b[:, :, None, :], s, per_class, total, clip_boxes=False, **settings
        )

    return Case(
        name=f"batched per-class NMS, batch {batch}, {num_boxes} boxes, {classes} classes",
        ours=_fetch(ours, boxes, scores),
        peer=_fetch(peer, boxes, scores),
        peer_name="tf.image.combined_non_max_suppression",
        limit=1.0,
        note=f"score threshold 0.05, {per_class} per class, {total} per image; peer: clip_boxes=False",
    )


def _detector_case(batch=8):
    """Per-class NMS on what a trained detector gives it: `retinanet_resnet18_shapes`' decoded candidates for
    `batch` embedded test images (12,276 anchors x 10 classes per image, about 1% of the scores above 0.05)."""
    import kerasdet
    from kerasdet.data import synthetic

    model = kerasdet.zoo.load("retinanet_resnet18_shapes")
    images, _ = synthetic.generate(batch, 256, seed=synthetic.split_seed("test"))
    images = tf.constant(images, tf.float32)
    boxes, scores = model.decode_candidates(model(images, training=False), images)
    share = float(tf.reduce_mean(tf.cast(scores > model.score_threshold, tf.float32)))
    settings = dict(iou_threshold=model.nms_iou_threshold, score_threshold=model.score_threshold)
    limit = model.max_detections

    @tf.function
    def ours(b, s):
        return batched_non_max_suppression(b, s, max_detections=limit, **settings)

    @tf.function
    def peer(b, s):
        return tf.image.combined_non_max_suppression(b[:, :, None, :], s, limit, limit, clip_boxes=False, **settings)

    return Case(
        name=f"batched per-class NMS, retinanet_resnet18_shapes outputs, batch {batch}",
        ours=_fetch(ours, boxes, scores),
        peer=_fetch(peer, boxes, scores),
        peer_name="tf.image.combined_non_max_suppression",
        limit=1.0,
        note=f"{share:.2%} of the {int(scores.shape[1])} x {int(scores.shape[2])} scores per image above "
             f"{model.score_threshold}; IoU {model.nms_iou_threshold}, {limit} per class and per image",
    )


def cases():
    """The NMS timing cases (see the module docstring)."""
    rng = np.random.default_rng(2024)
    return [
        _single_case(rng, 1000),
        _single_case(rng, 5000),
        _single_case(rng, 20000, limit=1.2),
        _single_case(rng, 20000, limit=1.0, max_output_size=100),
        _batched_case(rng),
        _detector_case(),
    ]
