"""Matching of anchors (or proposals) to ground-truth boxes by IoU, as in Faster R-CNN, SSD and Detectron2.

Match states are int32: `POSITIVE` (1), `NEGATIVE` (0) and `IGNORE` (-1).
"""

from __future__ import annotations

import numbers

import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_last_dim, check_rank
from kerasdet.ops._reduce import first_index_of_max
from kerasdet.ops.boxes import iou, padding_rows

POSITIVE = 1
NEGATIVE = 0
IGNORE = -1


def validate_thresholds(thresholds, match_values):
    """Checks and normalises `thresholds` / `match_values`; returns (list of floats, list of ints)."""
    if isinstance(thresholds, numbers.Real) and not isinstance(thresholds, bool):
        thresholds = [thresholds]
    if not isinstance(thresholds, (list, tuple)) or not thresholds:
        raise ValueError(f"`thresholds` must be a non-empty sequence of IoU values in (0, 1]; got {thresholds!r}")
    out_t = []
    for t in thresholds:
        if not isinstance(t, numbers.Real) or isinstance(t, bool) or not 0.0 < t <= 1.0:
            raise ValueError(f"`thresholds` must hold IoU values in (0, 1]; got {thresholds!r}")
        out_t.append(float(t))
    if any(b < a for a, b in zip(out_t, out_t[1:])):
        raise ValueError(f"`thresholds` must be non-decreasing; got {thresholds!r}")
    if not isinstance(match_values, (list, tuple)) or len(match_values) != len(out_t) + 1:
        raise ValueError(
            f"`match_values` must hold len(thresholds) + 1 = {len(out_t) + 1} values (one per IoU interval); "
            f"got {match_values!r}"
        )
    out_v = []
    for v in match_values:
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v not in (IGNORE, NEGATIVE, POSITIVE):
            raise ValueError(f"`match_values` must hold -1 (ignore), 0 (negative) or 1 (positive); got {match_values!r}")
        out_v.append(int(v))
    return out_t, out_v


def match_boxes(
    anchors,
    gt_boxes,
    gt_labels,
    thresholds=(0.3, 0.7),
    match_values=(0, -1, 1),
    allow_low_quality_matches: bool = True,
    force_best_match: bool = False,
):
    """Matches every anchor to its best ground-truth box and classifies it by IoU.

    For each image, the IoU of every anchor with every valid ground-truth box (label >= 0; padded
    rows carry label -1 and are ignored) is computed. An anchor's matched box is the valid box with
    the highest IoU (the lowest index on ties), and its state is `match_values[i]` for the interval
    `thresholds[i-1] <= IoU < thresholds[i]` (Detectron2's `Matcher`): with the defaults, negative
    below 0.3, ignored in [0.3, 0.7), positive from 0.7 (Ren et al., 2015, §3.1.2).

    Low-quality matches (so that every ground-truth box gets at least one positive anchor):
    - `allow_low_quality_matches=True` (Faster R-CNN, Detectron2): for each valid box, *every*
      anchor whose IoU with it equals that box's highest IoU over all anchors (all tied anchors)
      becomes positive; its matched index stays its own best box, as in Detectron2.
    - `force_best_match=True` (SSD, Liu et al., 2016, §2.2): for each valid box, its single best
      anchor (lowest index on ties) becomes positive *and is matched to that box*; when several
      boxes pick the same anchor, the box with the highest index wins (the order of SSD's loop).
    Only one of the two may be set. Unlike Detectron2, a box whose highest IoU is 0 forces nothing
    (Detectron2 would turn every anchor positive).

    Anchor rows that are all -1 (padding, e.g. of a padded proposal set) are `IGNORE` with index -1.
    An image without valid ground truth gets `match_values[0]` (IoU 0) everywhere and index -1.

    Args:
        anchors: `[A, 4]` (shared by the batch) or `[B, A, 4]` `xyxy` boxes.
        gt_boxes: `[B, M, 4]` `xyxy` ground-truth boxes (M may be 0).
        gt_labels: `[B, M]` int labels, -1 for padding.
        thresholds: non-decreasing IoU thresholds in (0, 1].
        match_values: `len(thresholds) + 1` states in {-1, 0, 1}, one per interval.
        allow_low_quality_matches: Detectron2's tie rule described above.
        force_best_match: SSD's best-anchor rule described above.

    Returns:
        `(matched_gt_indices, match_states, matched_ious)`: int32 `[B, A]` index of the matched
        ground-truth row (-1 where none), int32 `[B, A]` state, float32 `[B, A]` IoU with the
        matched box.

    Example:
        >>> anchors = [[0., 0., 10., 10.], [20., 20., 30., 30.]]
        >>> idx, states, ious = match_boxes(anchors, [[[0., 0., 10., 12.]]], [[3]])
        >>> states.numpy()
        array([[1, 0]], dtype=int32)
    """
    thresholds, match_values = validate_thresholds(thresholds, match_values)
    if allow_low_quality_matches and force_best_match:
        raise ValueError("set only one of `allow_low_quality_matches` (Detectron2) and `force_best_match` (SSD)")
    a = as_float_tensor(anchors, "anchors")
    g = as_float_tensor(gt_boxes, "gt_boxes")
    labels = tf.convert_to_tensor(gt_labels)
    if not labels.dtype.is_integer:
        raise TypeError(f"`gt_labels` must be an integer tensor [B, M]; got dtype {labels.dtype.name}")
    check_rank(a, "anchors", (2, 3), "[A, 4] or [B, A, 4]")
    check_last_dim(a, "anchors", 4, "[A, 4] or [B, A, 4]")
    check_rank(g, "gt_boxes", 3, "[B, M, 4]")
    check_last_dim(g, "gt_boxes", 4, "[B, M, 4]")
    check_rank(labels, "gt_labels", 2, "[B, M]")
    labels = tf.cast(labels, tf.int32)

    batched = a if a.shape.rank == 3 else a[None]
    num_anchors = tf.shape(batched)[1]
    num_gt = tf.shape(g)[1]
    valid_gt = labels >= 0  # [B, M]
    ious = iou(batched, g)  # [B or 1, A, M]
    ious = tf.broadcast_to(ious, tf.stack([tf.shape(g)[0], num_anchors, num_gt]))
    ious = tf.where(valid_gt[:, None, :], ious, -1.0)
    has_gt = tf.reduce_any(valid_gt, axis=1)[:, None]  # [B, 1]

    best_iou = tf.reduce_max(ious, axis=2)  # [B, A]; -1 or -inf without valid gt
    best_gt = first_index_of_max(ious, best_iou, 2, num_gt)
    matched_iou = tf.where(has_gt, best_iou, 0.0)
    matched_idx = tf.where(has_gt, best_gt, -1)

    states = tf.fill(tf.shape(matched_iou), tf.constant(match_values[0], tf.int32))
    for t, v in zip(thresholds, match_values[1:]):
        states = tf.where(matched_iou >= t, tf.constant(v, tf.int32), states)

    if allow_low_quality_matches or force_best_match:
        gt_best = tf.reduce_max(ious, axis=1)  # [B, M]
        eligible = valid_gt & (gt_best > 0.0)
        if allow_low_quality_matches:
            tied = (ious == gt_best[:, None, :]) & eligible[:, None, :]
            states = tf.where(tf.reduce_any(tied, axis=2), tf.constant(POSITIVE, tf.int32), states)
        else:
            best_anchor = first_index_of_max(ious, gt_best, 1, num_anchors)  # [B, M]
            anchor_ids = tf.range(num_anchors, dtype=tf.int32)[None, :, None]
            chosen = (anchor_ids == best_anchor[:, None, :]) & eligible[:, None, :]  # [B, A, M]
            gt_ids = tf.range(num_gt, dtype=tf.int32)[None, None, :]
            winner = tf.reduce_max(tf.where(chosen, gt_ids, -1), axis=2)  # [B, A]
            forced = winner >= 0
            matched_idx = tf.where(forced, winner, matched_idx)
            forced_iou = tf.reduce_max(tf.where(chosen & (gt_ids == winner[:, :, None]), ious, -1.0), axis=2)
            matched_iou = tf.where(forced, forced_iou, matched_iou)
            states = tf.where(forced, tf.constant(POSITIVE, tf.int32), states)

    padded = padding_rows(batched)  # [B or 1, A]
    padded = tf.broadcast_to(padded, tf.shape(states))
    states = tf.where(padded, tf.constant(IGNORE, tf.int32), states)
    matched_idx = tf.where(padded, -1, matched_idx)
    matched_iou = tf.where(padded, 0.0, matched_iou)
    return matched_idx, states, matched_iou
