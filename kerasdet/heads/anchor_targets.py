"""Anchor (or proposal) target assignment: match -> crowd and border rules -> gather -> weights."""

from __future__ import annotations

import tensorflow as tf

from kerasdet.ops.boxes import area
from kerasdet.ops.replicas import sum_over_replicas

#: a negative anchor covered at least this much by a crowd region is ignored instead
CROWD_IOA_THRESHOLD = 0.5


def _intersection_over_area(anchors, regions):
    """[B, A, M] share of each anchor's area inside each region (0 for zero-area anchors)."""
    a = anchors[..., :, None, :]
    r = regions[..., None, :, :]
    w = tf.maximum(tf.minimum(a[..., 2], r[..., 2]) - tf.maximum(a[..., 0], r[..., 0]), 0.0)
    h = tf.maximum(tf.minimum(a[..., 3], r[..., 3]) - tf.maximum(a[..., 1], r[..., 1]), 0.0)
    anchor_area = area(anchors)[..., :, None]
    return tf.math.divide_no_nan(w * h, anchor_area)


def ignore_crowd_overlaps(states, anchors, gt_boxes, is_crowd):
    """Negative states (0) of anchors covered >= 50% by a crowd region become ignored (-1).

    Args:
        states: int `[B, A]` match states.
        anchors: `[A, 4]` or `[B, A, 4]` xyxy.
        gt_boxes: `[B, M, 4]`; `is_crowd`: bool `[B, M]`.
    """
    anchors = tf.cast(anchors, tf.float32)
    if anchors.shape.rank == 2:
        anchors = tf.broadcast_to(anchors[None], [tf.shape(gt_boxes)[0], tf.shape(anchors)[0], 4])
    ioa = _intersection_over_area(anchors, tf.cast(gt_boxes, tf.float32))
    covered = tf.where(is_crowd[:, None, :], ioa, 0.0)
    # a zero column keeps the maximum defined when there are no ground-truth rows (M = 0)
    crowd_cover = tf.reduce_max(tf.concat([covered, tf.zeros_like(covered[..., :1])], axis=-1), axis=-1)
    return tf.where((states == 0) & (crowd_cover >= CROWD_IOA_THRESHOLD), -1, states)


def assign_anchor_targets(matcher, anchors, targets, image_hw=None, border_tolerance=None):
    """Matches anchors to the targets and gathers what the losses need, for every anchor.

    Crowd regions (`targets["is_crowd"]`) are never matched, and negatives they cover (>= 50% of the
    anchor's area) are ignored. With `border_tolerance` (pixels, >= 0) and `image_hw`, anchors
    reaching further than that beyond the image are ignored (Faster R-CNN's RPN, Ren et al. 2015 §3.3).

    Args:
        matcher: a `BoxMatcher`.
        anchors: `[A, 4]` shared or `[B, A, 4]` per image, xyxy pixels.
        targets: standardised targets: "boxes" float32 `[B, M, 4]`, "labels" int32 `[B, M]`,
            optional "is_crowd" bool `[B, M]`.
        image_hw: `[2]` float (height, width), needed for `border_tolerance`.
        border_tolerance: None (keep every anchor) or a number of pixels.

    Returns:
        dict: `"states"` int32 `[B, A]` (1 positive, 0 negative, -1 ignored); `"labels"` int32 `[B, A]`
        (the matched class for positives, -1 otherwise); `"indices"` int32 `[B, A]` (the matched
        ground-truth row for positives, -1 otherwise); `"boxes"` float32 `[B, A, 4]` (the matched
        box for positives, the anchor itself otherwise, so that encoding stays finite);
        `"positive"` and `"valid"` float32 `[B, A]` weights; `"num_positive"` float32 (at least 1; the count in the
        global batch when a `tf.distribute` strategy splits it over replicas).

    Example:
        >>> out = assign_anchor_targets(BoxMatcher(), anchors, {"boxes": boxes, "labels": labels})
        >>> out["states"].shape                       # [B, A]
    """
    gt_boxes = targets["boxes"]
    gt_labels = targets["labels"]
    is_crowd = targets.get("is_crowd")
    if is_crowd is not None:
        gt_labels = tf.where(is_crowd, -1, gt_labels)
    match = matcher(anchors, gt_boxes, gt_labels)
    states = match["match_states"]
    if is_crowd is not None:
        states = ignore_crowd_overlaps(states, anchors, gt_boxes, is_crowd)
    if border_tolerance is not None:
        if image_hw is None:
            raise ValueError("`border_tolerance` needs `image_hw`")
        t = float(border_tolerance)
        a = tf.cast(anchors, tf.float32)
        inside = ((a[..., 0] >= -t) & (a[..., 1] >= -t) & (a[..., 2] <= image_hw[1] + t)
                  & (a[..., 3] <= image_hw[0] + t))
        states = tf.where(tf.broadcast_to(inside, tf.shape(states)), states, -1)
    index = tf.maximum(match["matched_gt_indices"], 0)
    positive = tf.equal(states, 1)
    matched_boxes = tf.gather(gt_boxes, index, batch_dims=1)
    matched_labels = tf.gather(gt_labels, index, batch_dims=1)
    anchor_boxes = tf.broadcast_to(tf.cast(anchors, tf.float32), tf.shape(matched_boxes))
    positive_f = tf.cast(positive, tf.float32)
    return {
        "states": states,
        "labels": tf.where(positive, matched_labels, -1),
        "indices": tf.where(positive, index, -1),
        "boxes": tf.where(positive[..., None], matched_boxes, anchor_boxes),
        "positive": positive_f,
        "valid": tf.cast(tf.not_equal(states, -1), tf.float32),
        # over the global batch under a tf.distribute strategy (each replica holds a share of it)
        "num_positive": tf.maximum(sum_over_replicas(tf.reduce_sum(positive_f)), 1.0),
    }
