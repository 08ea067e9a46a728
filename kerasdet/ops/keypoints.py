"""Keypoint heatmaps of Mask R-CNN's keypoint head: one-hot training targets and decoding of predictions.

He et al., 2017, "Mask R-CNN" (https://arxiv.org/abs/1703.06870), §5: each of an instance's K keypoints is
a one-hot `m x m` mask (m = 56) over its RoI, and the head is trained with a cross-entropy over the `m^2`
bins of each keypoint's map (a spatial softmax). Both functions here use the same grid: a roi
`(x1, y1, x2, y2)` is cut into `S x S` equal bins, bin `(row, col)` covering
`[x1 + col * w / S, x1 + (col + 1) * w / S)` by `[y1 + row * h / S, y1 + (row + 1) * h / S)` with
`w = x2 - x1`, `h = y2 - y1`, and its flat index is `row * S + col`.

- `keypoint_heatmap_targets`: the bin of each ground-truth keypoint, `col = floor((x - x1) * S / w)` and
  `row = floor((y - y1) * S / h)` in float32, in that order of operations, clamped to `S - 1` (a keypoint
  on the right or bottom edge lands in the last bin). A keypoint trains (`valid`) when its visibility is
  positive, the roi has positive width and height, the keypoint lies in the closed roi
  `[x1, x2] x [y1, y2]` and all of its and its roi's values are finite; other entries have index 0.
- `heatmaps_to_keypoints`: the argmax bin of each predicted map (the lowest flat index on ties), moved
  within its bin by the vertex of a parabola through the logits of the bin and its two neighbours,
  separately along each axis, and scored by the spatial-softmax probability of the argmax bin.

All the arithmetic is float32, whatever the input dtypes.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_last_dim, check_rank, positive_int
from kerasdet.ops._reduce import first_index_of_max
from kerasdet.ops.boxes import padding_rows

__all__ = ["keypoint_heatmap_targets", "heatmaps_to_keypoints"]

_KEYPOINTS_SHAPE = "[B, R, K, 3] (x, y, visibility)"
_ROIS_SHAPE = "[B, R, 4] (x1, y1, x2, y2 in input pixels)"
_DETECTIONS_SHAPE = "[B, N, 4] (x1, y1, x2, y2 in input pixels)"
_HEATMAPS_SHAPE = "[B, N, S, S, K] (one S x S map of logits per keypoint, channels last)"


def _check_leading(a, a_name, b, b_name, names):
    """ValueError when the statically known leading dims `names` of `a` and `b` disagree."""
    if a.shape.rank is None or b.shape.rank is None:
        return
    for i, dim in enumerate(names):
        if a.shape[i] is not None and b.shape[i] is not None and a.shape[i] != b.shape[i]:
            raise ValueError(
                f"`{a_name}` and `{b_name}` must agree on {dim} (dimension {i}); got {a_name} shape "
                f"{tuple(a.shape)} and {b_name} shape {tuple(b.shape)}"
            )


def _bin(value, start, extent, size):
    """Bin of `value` along one roi side: int32 `clip(floor((value - start) * size / extent), 0, size - 1)`.

    Also returns whether the position is a number (False only where float32 overflows to inf / inf or the
    extent is 0); the clamp keeps the cast to int32 defined for every input.
    """
    position = (value - start) * float(size) / extent
    is_number = tf.logical_not(tf.math.is_nan(position))
    position = tf.where(is_number, position, 0.0)
    index = tf.clip_by_value(tf.floor(position), 0.0, float(size - 1))
    return tf.cast(index, tf.int32), is_number


def keypoint_heatmap_targets(keypoints, rois, heatmap_size):
    """Training targets of Mask R-CNN's keypoint head: the one-hot bin of each keypoint in its roi.

    Mask R-CNN (He et al., 2017, §5) trains each keypoint's `S x S` map (S = 56 in the paper) with a
    softmax cross-entropy whose target is the single bin holding the ground-truth keypoint. The bin of a
    keypoint `(x, y)` in a roi `(x1, y1, x2, y2)` is `row * S + col` with

        col = min(floor((x - x1) * S / (x2 - x1)), S - 1),  row = min(floor((y - y1) * S / (y2 - y1)), S - 1)

    computed in float32 in that order (so a keypoint on the right edge `x == x2` is in column `S - 1`, the
    bottom edge likewise). The keypoint trains (`valid`) when its visibility is positive (COCO's 1,
    labelled but occluded, and 2, visible; 0 is not labelled), the roi has positive width and height,
    `x1 <= x <= x2` and `y1 <= y <= y2`, and the keypoint's three values and the roi's four are finite
    (in the float32 overflow case where the bin position is inf / inf, coordinates near 3e38, it does
    not train either). Padding rois (rows of -1) have zero size, so none of their keypoints trains.
    Entries that do not train have index 0.

    Args:
        keypoints: `[B, R, K, 3]` float `(x, y, visibility)` in input pixels: the keypoints of the ground
            truth matched to each roi, already gathered per roi.
        rois: `[B, R, 4]` `xyxy` boxes in input pixels; rows of -1 are padding.
        heatmap_size: `S`, the side of the heatmap (a positive int).

    Returns:
        `(indices, valid)`: int32 `[B, R, K]` flat bin indices `row * S + col` in `[0, S * S)` (0 where not
        valid) and bool `[B, R, K]`, whether the keypoint trains.

    Example:
        >>> kp = [[[[3.0, 5.0, 2.0], [8.0, 0.0, 1.0], [1.0, 1.0, 0.0]]]]
        >>> indices, valid = keypoint_heatmap_targets(kp, [[[0.0, 0.0, 8.0, 8.0]]], 4)
        >>> indices.numpy(), valid.numpy()
        (array([[[9, 3, 0]]], dtype=int32), array([[[ True,  True, False]]]))
    """
    size = positive_int(heatmap_size, "heatmap_size")
    kp = as_float_tensor(keypoints, "keypoints")
    check_rank(kp, "keypoints", 4, _KEYPOINTS_SHAPE)
    check_last_dim(kp, "keypoints", 3, _KEYPOINTS_SHAPE)
    boxes = as_float_tensor(rois, "rois")
    check_rank(boxes, "rois", 3, _ROIS_SHAPE)
    check_last_dim(boxes, "rois", 4, _ROIS_SHAPE)
    _check_leading(kp, "keypoints", boxes, "rois", ("the batch size B", "the number of rois R"))

    x, y, visibility = tf.unstack(kp, 3, axis=-1)  # [B, R, K] each
    x1, y1, x2, y2 = (c[:, :, None] for c in tf.unstack(boxes, 4, axis=-1))
    width = x2 - x1
    height = y2 - y1
    col, col_is_number = _bin(x, x1, width, size)
    row, row_is_number = _bin(y, y1, height, size)
    finite = tf.logical_and(
        tf.reduce_all(tf.math.is_finite(kp), axis=-1),
        tf.reduce_all(tf.math.is_finite(boxes), axis=-1)[:, :, None],
    )
    conditions = [
        finite,
        visibility > 0.0,
        width > 0.0,
        height > 0.0,
        x >= x1,
        x <= x2,
        y >= y1,
        y <= y2,
        col_is_number,
        row_is_number,
    ]
    valid = functools.reduce(tf.logical_and, conditions)
    indices = tf.where(valid, row * size + col, 0)
    return indices, valid


def _vertex_offset(before, centre, after, inner):
    """Sub-bin offset of the parabola through `(-1, before), (0, centre), (1, after)`, in [-0.5, 0.5].

    With `a = before - centre` and `b = after - centre` (both <= 0 at an argmax) the vertex is at
    `(a - b) / (2 * (a + b))`, which is `(L[-1] - L[1]) / (2 * (L[-1] - 2 L[0] + L[1]))`. It is used where
    `inner` holds, `a` and `b` are finite and `a + b < 0` (a true maximum); elsewhere the offset is 0.
    """
    a = before - centre
    b = after - centre
    den = a + b
    use = inner & tf.math.is_finite(a) & tf.math.is_finite(b) & (den < 0.0)
    offset = (a - b) / (2.0 * tf.where(use, den, -1.0))
    return tf.where(use, tf.clip_by_value(offset, -0.5, 0.5), 0.0)


def _heatmap_side(maps):
    """Static checks of `heatmaps`; returns the runtime assertions its dynamic dims still need."""
    check_rank(maps, "heatmaps", 5, _HEATMAPS_SHAPE)
    if maps.shape.rank is None:
        return []
    h, w = maps.shape[2], maps.shape[3]
    if h == 0 or w == 0:
        raise ValueError(f"`heatmaps` must have a non-empty spatial size; got shape {tuple(maps.shape)}")
    if h is not None and w is not None:
        if h != w:
            raise ValueError(f"`heatmaps` must be square, {_HEATMAPS_SHAPE}; got shape {tuple(maps.shape)}")
        return []
    shape = tf.shape(maps)
    message = f"`heatmaps` must be square and non-empty, {_HEATMAPS_SHAPE}"
    return [
        tf.debugging.assert_equal(shape[2], shape[3], message=message),
        tf.debugging.assert_positive(shape[2], message=message),
    ]


def heatmaps_to_keypoints(heatmaps, rois) -> tf.Tensor:
    """Keypoints `(x, y, score)` decoded from the keypoint head's heatmaps (Mask R-CNN, He et al., 2017, §5).

    For each roi `(x1, y1, x2, y2)` and each keypoint's `S x S` map of logits `L`:

    - `(r, c)` is the argmax bin of `L`, the lowest flat index `r * S + c` on ties;
    - along the columns, with `a = L[r, c - 1] - L[r, c]` and `b = L[r, c + 1] - L[r, c]`, the offset is
      `dx = (a - b) / (2 * (a + b))`, the vertex of the parabola through the three logits (that is
      `(L[c-1] - L[c+1]) / (2 * (L[c-1] - 2 L[c] + L[c+1]))`), when `0 < c < S - 1`, `a` and `b` are
      finite and `a + b < 0` (a true maximum), and 0 otherwise; it is clipped to `[-0.5, 0.5]`. `dy`
      likewise along the rows;
    - `x = x1 + (c + 0.5 + dx) * (x2 - x1) / S`, `y = y1 + (r + 0.5 + dy) * (y2 - y1) / S`;
    - `score = exp(L[r, c]) / sum(exp(L))` over the map's `S * S` bins (the spatial softmax of the
      training loss), in `[0, 1]`.

    Padding rois (rows of -1) give `x = y = score = 0`. Bins of `-inf` are allowed (probability 0); a map
    holding a NaN or `+inf`, or only `-inf`, gives NaN `x`, `y` and score. Other rois are not special-cased
    (a roi of zero width gives `x = x1`). The math is float32 whatever the dtype of `heatmaps`; graph-safe
    with unknown `B`, `N` and `S` (squareness is then asserted at run time).

    Args:
        heatmaps: `[B, N, S, S, K]` float logits, one `S x S` map per keypoint (channels last).
        rois: `[B, N, 4]` `xyxy` boxes in input pixels (the detections the maps were predicted for); rows
            of -1 are padding.

    Returns:
        float32 `[B, N, K, 3]`: `(x, y, score)` of each keypoint in input pixels.

    Example:
        >>> maps = tf.reshape(10.0 * tf.one_hot(1 * 4 + 2, 16), [1, 1, 4, 4, 1])  # peak at row 1, col 2
        >>> heatmaps_to_keypoints(maps, [[[0.0, 0.0, 8.0, 8.0]]]).numpy().round(3)
        array([[[[5.   , 3.   , 0.999]]]], dtype=float32)
    """
    maps = as_float_tensor(heatmaps, "heatmaps")
    checks = _heatmap_side(maps)
    boxes = as_float_tensor(rois, "rois")
    check_rank(boxes, "rois", 3, _DETECTIONS_SHAPE)
    check_last_dim(boxes, "rois", 4, _DETECTIONS_SHAPE)
    _check_leading(maps, "heatmaps", boxes, "rois", ("the batch size B", "the number of rois N"))

    with tf.control_dependencies(checks):
        shape = tf.shape(maps)
    side = shape[2]
    bins = side * side
    # [B, N, S, S, K] -> [M, S * S] with M = B * N * K, flat index r * S + c
    flat = tf.reshape(tf.transpose(maps, [0, 1, 4, 2, 3]), tf.stack([-1, bins]))
    top = tf.reduce_max(flat, axis=1)
    usable = tf.math.is_finite(top) & tf.logical_not(tf.reduce_any(tf.math.is_nan(flat), axis=1))
    index = tf.minimum(first_index_of_max(flat, top, 1, bins), bins - 1)  # bins only for unusable maps
    row = index // side
    col = index % side
    neighbours = tf.clip_by_value(tf.stack([index - 1, index + 1, index - side, index + side], axis=1), 0, bins - 1)
    around = tf.gather(flat, neighbours, batch_dims=1)  # [M, 4]
    dx = _vertex_offset(around[:, 0], top, around[:, 1], (col > 0) & (col < side - 1))
    dy = _vertex_offset(around[:, 2], top, around[:, 3], (row > 0) & (row < side - 1))
    score = 1.0 / tf.reduce_sum(tf.exp(flat - top[:, None]), axis=1)

    per_map = tf.stack([shape[0], shape[1], shape[4]])

    def unflatten(t):
        return tf.reshape(t, per_map)

    s = tf.cast(side, tf.float32)
    x1, y1, x2, y2 = (c[:, :, None] for c in tf.unstack(boxes, 4, axis=-1))
    col_f = unflatten(tf.cast(col, tf.float32) + 0.5 + dx)
    row_f = unflatten(tf.cast(row, tf.float32) + 0.5 + dy)
    x = x1 + col_f * (x2 - x1) / s
    y = y1 + row_f * (y2 - y1) / s
    out = tf.stack([x, y, unflatten(score)], axis=-1)
    out = tf.where(unflatten(usable)[..., None], out, float("nan"))
    out = tf.where(padding_rows(boxes)[:, :, None, None], 0.0, out)
    leading = boxes.shape[:2] if boxes.shape.rank is not None else tf.TensorShape([None, None])
    keypoint_count = [None]
    if maps.shape.rank is not None:
        leading = leading.merge_with(maps.shape[:2])
        keypoint_count = [maps.shape[4]]
    return tf.ensure_shape(out, leading.concatenate(keypoint_count).concatenate([3]))
