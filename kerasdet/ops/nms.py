"""Non-maximum suppression: exact greedy NMS, batched per-class NMS and Gaussian soft-NMS.

Semantics (DESIGN.md section 4), shared by every function here:

- candidates are ranked by score, descending; equal scores rank the lower index first;
- boxes whose score is `<= score_threshold` are dropped before anything else (NaN scores too), and so
  are boxes with a non-finite coordinate (NaN or inf): they never suppress and are never returned;
- greedy selection: walking down the ranking, a candidate is kept unless its IoU with an
  already kept box is *strictly greater* than `iou_threshold`;
- degenerate boxes (zero or negative width or height, i.e. `max(x2-x1,0)*max(y2-y1,0) == 0`)
  never suppress and are never suppressed (their IoU with anything is 0);
- IoU is computed in float32 exactly as TensorFlow's NMS kernels do:
  `inter / (area_i + area_j - inter)`, and `iou_threshold` / `score_threshold` are rounded to
  float32 before the comparisons. Results therefore equal the float32 numpy reference
  (`tests/reference/nms.py`) index for index.

Boxes are `xyxy` in pixels (any coordinate order inside the box is accepted: inverted boxes
count as degenerate). All computations run in float32 whatever the input dtype.

Engine: the greedy loop runs in TensorFlow's CPU kernels (`NonMaxSuppressionV5` for one set of
boxes, `CombinedNonMaxSuppression` for many sets at once). Two facts make them exact here: boxes
with `x2 < x1` or `y2 < y1` are collapsed to zero area first (the kernels would otherwise reorder
the corners), and for the batched op every class row is first reduced to a window of its
`top_k` best candidates (`tf.math.top_k` orders ties by lower index) whose scores are replaced by
their distinct ranks, so that the kernel's own ordering can no longer differ on ties. Greedy NMS
on a prefix of the ranking equals the prefix of greedy NMS on the whole ranking, so the window
result is final as soon as it holds `max_detections_per_class` boxes or the window covers every
candidate above `score_threshold`; rows for which neither holds are solved again with a window
four times larger, until the window covers the whole row. When at most 1/128 of the scores pass
`score_threshold` (a detector's usual case: thousands of candidates among B x N x C scores), the
first windows are built from those candidates alone (`tf.where` and two stable sorts, same ranking
as `top_k`) instead of a transpose and a `top_k` over every (image, class) row, and hold every
candidate of a row (up to 2,048). Before any of that, when at most a quarter of the scores pass,
no two candidates of one image share a score and no box is inverted, the batched kernel runs on
the scores themselves: its unspecified tie order cannot matter then. Single-set NMS with
`max_output_size` first runs the kernel on the best-ranked window of boxes, by the same prefix rule.

These ops are usable eagerly and inside `tf.function`, but not under XLA
(`jit_compile=True`): TensorFlow has no XLA kernel for its NMS ops. The kernels are pinned to the
CPU, because TensorFlow's GPU NMS kernels test `inter > union * iou_threshold`, which rounds
differently; on a GPU machine the boxes (for the batched op only the small candidate windows)
are copied to the host.

References:
    Greedy NMS: Felzenszwalb et al., "Object Detection with Discriminatively Trained Part-Based
    Models", TPAMI 2010; Girshick et al., "Rich feature hierarchies for accurate object detection
    and semantic segmentation", CVPR 2014.
    Soft-NMS: Bodla et al., "Soft-NMS -- Improving Object Detection With One Line of Code",
    ICCV 2017.
"""

from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np
import tensorflow as tf

from kerasdet.ops._checks import check_rank
from kerasdet.ops._reduce import first_index_of_max

__all__ = ["non_max_suppression", "batched_non_max_suppression", "check_nms_options", "set_kernel_device"]

# Ranks are handed to the batched kernel as float32 scores; they stay exact below 2**24.
_MAX_BOXES = 2**24
# Growth of the candidate window for rows that need more candidates.
_WINDOW_GROWTH = 4
# Single-set NMS with `max_output_size` looks at the best max(_WINDOW_GROWTH * max_output_size, _MIN_WINDOW) boxes
# first (see `_best_window_first`).
_MIN_WINDOW = 256
# Per-class NMS sorts only the candidates above the threshold when they are at most this fraction
# of all scores (1 / _SPARSE_FRACTION); otherwise it runs top_k over every (image, class) row.
_SPARSE_FRACTION = 128
# Per-class NMS tries the kernel directly on the scores when at most this fraction (1 / _DIRECT_FRACTION) of them
# pass the threshold (see `_kernel_order_is_exact`).
_DIRECT_FRACTION = 4
# The largest first window of the sparse path (see `_batched`).
_MAX_SPARSE_WINDOW = 2048
# Where the NMS kernels run: None lets TensorFlow place them (on a GPU when there is one); a device string pins
# them there (see `set_kernel_device`).
_KERNEL_DEVICE = None


def set_kernel_device(device: str | None) -> None:
    """Pins the NMS kernels to `device` (e.g. "/device:CPU:0"), or lets TensorFlow place them (None, the default).

    On a CPU the results are exact (the greedy definition in this module, equal to the numpy reference and to
    torchvision's `nms`). TensorFlow's GPU kernel tests `intersection > union * threshold` where the CPU kernel
    tests `intersection / union > threshold`, so on a GPU a box whose IoU rounds to the threshold can be kept or
    suppressed differently. Pinning to the CPU gives the CPU's results everywhere, at the cost of copying every
    NMS input (the RPN's at each training step) to the host and back. Takes effect for graphs traced afterwards.

    Example:
        >>> kerasdet.ops.nms.set_kernel_device("/device:CPU:0")   # CPU results on a GPU machine
        >>> kerasdet.ops.nms.set_kernel_device(None)              # the default: no device pin
    """
    global _KERNEL_DEVICE
    if device is not None and not isinstance(device, str):
        raise TypeError(f"`device` must be a device string such as '/device:CPU:0' or None; got {device!r}")
    _KERNEL_DEVICE = device or None


def _on_kernel_device():
    return tf.device(_KERNEL_DEVICE) if _KERNEL_DEVICE else contextlib.nullcontext()


# ----------------------------------------------------------------------------- input checks


def _check_number(name, value, *, low=None, high=None, allow_neg_inf=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r} of type {type(value).__name__}.")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not (allow_neg_inf and value < 0)):
        allowed = "a finite number or -inf" if allow_neg_inf else "a finite number"
        raise ValueError(f"`{name}` must be {allowed}, got {value}.")
    if (low is not None and value < low) or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"`{name}` must be {expected}, got {value}.")
    return value


def _check_count(name, value, *, minimum, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = "an int or None" if allow_none else "an int"
        raise TypeError(f"`{name}` must be {expected}, got {value!r} of type {type(value).__name__}.")
    value = int(value)
    if not minimum <= value < 2**31:
        raise ValueError(f"`{name}` must be in [{minimum}, 2**31 - 1], got {value}.")
    return value


def _to_float32(name, value):
    """Converts to a float32 tensor, refusing non-numeric dtypes with a TypeError."""
    try:
        tensor = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"`{name}` must be a numeric tensor or array, got {type(value).__name__}: {error}") from None
    if not (tensor.dtype.is_floating or tensor.dtype.is_integer):
        raise TypeError(f"`{name}` must have a float or integer dtype, got {tensor.dtype.name}.")
    if tensor.shape.rank is None:
        raise ValueError(f"`{name}` must have a known rank, got a tensor of unknown shape.")
    return tf.cast(tensor, tf.float32)


def _shape_check(condition_parts, message):
    """Static check when all dims are known, runtime assertion otherwise."""
    static = []
    dynamic = []
    for x, y in condition_parts:
        if isinstance(x, int) and isinstance(y, int):
            static.append(x == y)
        else:
            dynamic.append((x, y))
    if not all(static):
        raise ValueError(message)
    return [tf.debugging.assert_equal(x, y, message=message) for x, y in dynamic]


def _dims(tensor):
    """Static dims where known, dynamic scalars elsewhere."""
    dynamic = tf.shape(tensor)
    return [d if d is not None else dynamic[i] for i, d in enumerate(tensor.shape.as_list())]


# ----------------------------------------------------------------------------- shared pieces


def _zero_area_if_inverted(boxes):
    """Moves x2 (y2) onto x1 (y1) where x2 < x1 (y2 < y1): inverted boxes become zero-area.

    TensorFlow's NMS kernels sort each box's corners, which would turn an inverted box into a
    valid one. Valid boxes are returned unchanged, bit for bit.
    """
    xy1 = boxes[..., :2]
    return tf.concat([xy1, tf.maximum(boxes[..., 2:], xy1)], axis=-1)


def _finite_scores(scores):
    """NaN scores become -inf, which no `score_threshold` keeps."""
    return tf.where(tf.math.is_nan(scores), tf.constant(-np.inf, tf.float32), scores)


def _drop_non_finite_boxes(boxes, scores):
    """Boxes with a NaN or inf coordinate get a NaN score (dropped like any NaN score) and zero coordinates (so
    the kernels never compute with them). `boxes` `[..., 4]` is `scores`' shape plus 4, or `[B, N, 4]` for
    `[B, N, C]` scores."""
    finite = tf.reduce_all(tf.math.is_finite(boxes), axis=-1)
    if finite.shape.rank < scores.shape.rank:
        finite_scores = finite[..., None]
    else:
        finite_scores = finite

    def dropped():
        return tf.where(finite[..., None], boxes, 0.0), tf.where(finite_scores, scores, tf.constant(np.nan, tf.float32))

    # the usual case, every box finite, costs one pass over the boxes and none over the (C times larger) scores
    return tf.cond(tf.reduce_all(finite), lambda: (tf.identity(boxes), tf.identity(scores)), dropped)


def _nms_v5(boxes, scores, max_output_size, iou_threshold, score_threshold, soft_nms_sigma, pad):
    """TensorFlow's `NonMaxSuppressionV5` kernel on the CPU (see the module docstring).

    Args:
        boxes: float32 `[N, 4]`, already passed through `_zero_area_if_inverted`.
        scores: float32 `[N]`.
        max_output_size: int or int32 scalar.
        iou_threshold, score_threshold, soft_nms_sigma: Python floats (rounded to float32 here).
        pad: `pad_to_max_output_size`.

    Returns:
        `(selected_indices, selected_scores, valid_outputs)` as the kernel gives them.
    """
    with _on_kernel_device():
        return tf.raw_ops.NonMaxSuppressionV5(
            boxes=boxes,
            scores=scores,
            max_output_size=tf.cast(max_output_size, tf.int32),
            iou_threshold=tf.constant(iou_threshold, tf.float32),
            score_threshold=tf.constant(score_threshold, tf.float32),
            soft_nms_sigma=tf.constant(soft_nms_sigma, tf.float32),
            pad_to_max_output_size=pad,
        )


def _combined_nms(boxes, scores, per_class, total, iou_threshold, score_threshold):
    """TensorFlow's `CombinedNonMaxSuppression` kernel (boxes `[B, N, q, 4]`, scores `[B, N, C]`), unpadded per
    class and unclipped; ties in its ranking are broken in an order it does not specify."""
    with _on_kernel_device():
        return tf.raw_ops.CombinedNonMaxSuppression(
            boxes=boxes,
            scores=scores,
            max_output_size_per_class=tf.constant(per_class, tf.int32),
            max_total_size=tf.constant(total, tf.int32),
            iou_threshold=tf.constant(iou_threshold, tf.float32),
            score_threshold=tf.constant(score_threshold, tf.float32),
            pad_per_class=False,
            clip_boxes=False,
        )


# ----------------------------------------------------------------------------- single set


def non_max_suppression(boxes, scores, iou_threshold=0.5, score_threshold=float("-inf"), max_output_size=None):
    """Greedy non-maximum suppression of one set of boxes.

    Ranks boxes by score (descending, ties: lower index first), drops those with
    `score <= score_threshold`, then keeps a box unless its IoU with an already kept box is
    strictly greater than `iou_threshold`. Degenerate boxes (zero or negative width or height)
    never suppress and are never suppressed. IoU is computed in float32. Not XLA-compilable.

    Reference: Felzenszwalb et al., TPAMI 2010; Girshick et al., "R-CNN", CVPR 2014.

    Args:
        boxes: `[N, 4]` xyxy boxes, float or integer.
        scores: `[N]` scores.
        iou_threshold: number in [0, 1]; a box is suppressed when its IoU with a kept box is
            strictly greater.
        score_threshold: boxes with `score <= score_threshold` are dropped first; default -inf
            keeps every box with a non-NaN score above -inf.
        max_output_size: int >= 0, the most boxes returned; None returns all kept boxes.

    Returns:
        int32 `[K]` indices of the kept boxes, by decreasing score (the order of selection).

    Example:
        >>> boxes = [[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]
        >>> non_max_suppression(boxes, [0.9, 0.8, 0.7], iou_threshold=0.5).numpy()
        array([0, 2], dtype=int32)
    """
    iou_threshold = _check_number("iou_threshold", iou_threshold, low=0.0, high=1.0)
    score_threshold = _check_number("score_threshold", score_threshold, allow_neg_inf=True)
    max_output_size = _check_count("max_output_size", max_output_size, minimum=0, allow_none=True)
    boxes = _to_float32("boxes", boxes)
    scores = _to_float32("scores", scores)
    check_rank(boxes, "boxes", (2,), "[N, 4]")
    check_rank(scores, "scores", (1,), "[N]")
    n_boxes, four = _dims(boxes)
    (n_scores,) = _dims(scores)
    checks = _shape_check([(four, 4)], f"`boxes` must have shape [N, 4], got shape {boxes.shape}.")
    checks += _shape_check(
        [(n_boxes, n_scores)],
        f"`scores` must have shape [N] with N = boxes.shape[0]; got boxes {boxes.shape} and scores {scores.shape}.",
    )
    with tf.control_dependencies(checks):
        boxes, scores = tf.identity(boxes), tf.identity(scores)

    def every_box():
        kept_boxes, kept_scores = _drop_non_finite_boxes(boxes, scores)
        kept_boxes = _zero_area_if_inverted(kept_boxes)
        limit = n_boxes if max_output_size is None else max_output_size
        return _nms_v5(kept_boxes, kept_scores, limit, iou_threshold, score_threshold, 0.0, pad=False)[0]

    window = None if max_output_size is None else max(_WINDOW_GROWTH * max_output_size, _MIN_WINDOW)
    if window is None or window >= _MAX_BOXES:  # a window this large gains nothing (and 4x could overflow int32)
        return every_box()

    def window_first():
        return _best_window_first(boxes, scores, window, max_output_size, iou_threshold, score_threshold, every_box)

    if isinstance(n_boxes, int):
        return window_first() if n_boxes > window else every_box()
    return tf.cond(n_boxes > window, window_first, every_box)


def _best_window_first(boxes, scores, window, max_output_size, iou_threshold, score_threshold, every_box):
    """Greedy NMS of the `window` best-ranked boxes, or of every box when that cannot be the answer.

    Greedy NMS of a prefix of the ranking is the prefix of greedy NMS of the whole ranking, so the window's result
    is final when it already holds `max_output_size` boxes or when the window reaches a score at or below
    `score_threshold` (every candidate is inside). `top_k` ranks equal scores by lower index, as the definition
    does, and keeps that order, so the kernel's own tie rule (lower position first) agrees. Only the window's boxes
    are checked for non-finite coordinates and inverted corners: the final-detection case (20,000 candidates, 100
    kept) then costs one top_k instead of passes over every box and a kernel that queues all of them.
    """
    top_scores, order = tf.math.top_k(_finite_scores(scores), k=window)
    window_boxes, window_scores = _drop_non_finite_boxes(tf.gather(boxes, order), top_scores)
    window_boxes = _zero_area_if_inverted(window_boxes)
    selected, _, count = _nms_v5(window_boxes, window_scores, max_output_size, iou_threshold, score_threshold, 0.0,
                                 pad=False)
    final = (count >= max_output_size) | (top_scores[-1] <= tf.constant(score_threshold, tf.float32))
    return tf.cond(final, lambda: tf.gather(order, selected), every_box)


# ----------------------------------------------------------------------------- batched: rows


def _window_rows(top, n, rows, window, gather_candidates, per_row, iou_threshold, score_threshold):
    """Greedy NMS of each score row restricted to its `window` best candidates.

    Args:
        top: `(values, box_idx)`, float32 and int32 `[R, window]`: each row's `window` best scores by
            rank (ties: lower box index first) and their box indices, as `tf.math.top_k` gives them;
            slots past a row's candidates above `score_threshold` may hold any score `<=` it.
        n: int32 scalar, the length N of the full rows.
        rows: int32 `[R]` row ids, passed to `gather_candidates`.
        window: int32 scalar, 1 <= window <= N.
        gather_candidates: `(rows [R], box_idx [R, W]) -> boxes [R, W, 4]`.
        per_row: int, the most boxes kept per row.

    Returns:
        kept_idx int32 `[R, per_row]` (box indices in selection order, -1 padding),
        kept_scores float32 `[R, per_row]` (-inf padding), and `need` bool `[R]`: True where the
        window result may differ from the full result (fewer than `per_row` kept while valid
        candidates remain outside the window).
    """
    values, box_idx = top
    valid = values > score_threshold
    # distinct scores window, window-1, ..., 1 in rank order; 0 marks candidates below threshold
    ranks = tf.cast(window - tf.range(window), tf.float32)
    rank_scores = tf.where(valid, ranks[None, :], 0.0)
    candidates = _zero_area_if_inverted(gather_candidates(rows, box_idx))
    result = _combined_nms(candidates[:, :, None, :], rank_scores[:, :, None], per_row, per_row, iou_threshold, 0.0)
    count = result.valid_detections
    slot_used = tf.range(per_row)[None, :] < count[:, None]
    # the kernel sorts its output by (distinct) score: slot j holds the j-th selected candidate
    position = tf.where(slot_used, window - tf.cast(result.nmsed_scores, tf.int32), 0)
    kept_idx = tf.where(slot_used, tf.gather(box_idx, position, batch_dims=1), -1)
    kept_scores = tf.where(slot_used, tf.gather(values, position, batch_dims=1), -np.inf)
    window_all_valid = tf.reduce_all(valid, axis=1)
    need = (count < per_row) & window_all_valid & (window < n)
    return kept_idx, kept_scores, need


def _greedy_rows(first_top, get_rows, n, num_rows, per_row, gather_candidates, iou_threshold, score_threshold,
                 window=None):
    """Exact greedy NMS of every row, at most `per_row` boxes each.

    Starts from a window of `window` candidates (default: per_row + max(per_row // 4, 8)) taken by
    `first_top(window)` (-> `(values, box_idx)` `[num_rows, window]`, see `_window_rows`) and re-solves
    the rows that need it with windows `_WINDOW_GROWTH` times larger, reading those rows' full scores
    `[R', N]` with `get_rows(rows)`.
    """
    if window is None:
        window = per_row + max(per_row // 4, 8)
    first = tf.minimum(tf.cast(window, tf.int32), n)
    kept_idx, kept_scores, need = _window_rows(
        first_top(first), n, tf.range(num_rows), first, gather_candidates, per_row, iou_threshold, score_threshold
    )

    def cond(size, kept_idx, kept_scores, need):
        return tf.reduce_any(need)

    def body(size, kept_idx, kept_scores, need):
        size = tf.minimum(size * _WINDOW_GROWTH, n)
        rows = tf.cast(tf.where(need)[:, 0], tf.int32)
        top = tf.math.top_k(get_rows(rows), k=size)
        idx, scores, still = _window_rows(
            top, n, rows, size, gather_candidates, per_row, iou_threshold, score_threshold
        )
        at = rows[:, None]
        kept_idx = tf.tensor_scatter_nd_update(kept_idx, at, idx)
        kept_scores = tf.tensor_scatter_nd_update(kept_scores, at, scores)
        need = tf.tensor_scatter_nd_update(need, at, still)
        return size, kept_idx, kept_scores, need

    _, kept_idx, kept_scores, _ = tf.while_loop(cond, body, (first, kept_idx, kept_scores, need))
    return kept_idx, kept_scores


def _sparse_class_top(scores, candidates, window):
    """`tf.math.top_k` of every (image, class) row of `scores` restricted to the scores above the threshold.

    Sorts only the candidates above the threshold (`candidates`), instead of transposing
    `scores` to rows and running `top_k` over all N boxes of every row: much cheaper when few scores
    pass, as with a detector's thousands of candidates among B x N x C scores.

    Args:
        scores: float32 `[B, N, C]`.
        candidates: bool `[B, N, C]`, `scores > score_threshold` (False for NaN scores).
        window: int32 scalar, 1 <= window <= N.

    Returns:
        `(values, box_idx)`, float32 and int32 `[B * C, window]`, row `b * C + c`: the row's candidates
        by score descending (ties: lower box index first, as top_k), then -inf with box index 0.
    """
    batch, _, num_classes = tf.unstack(tf.shape(scores))
    num_rows = batch * num_classes
    where = tf.cast(tf.where(candidates), tf.int32)  # row-major: a row's boxes by index
    values = tf.gather_nd(scores, where)
    rows = where[:, 0] * num_classes + where[:, 2]
    # two stable sorts: by score descending, then by row; equal scores keep the lower box index first
    order = tf.argsort(values, direction="DESCENDING", stable=True)
    order = tf.gather(order, tf.argsort(tf.gather(rows, order), stable=True))
    rows = tf.gather(rows, order)
    values = tf.gather(values, order)
    box_idx = tf.gather(where[:, 1], order)
    starts = tf.math.cumsum(tf.math.bincount(rows, minlength=num_rows, maxlength=num_rows), exclusive=True)
    position = tf.range(tf.shape(rows)[0]) - tf.gather(starts, rows)
    inside = position < window
    at = tf.stack([tf.boolean_mask(rows, inside), tf.boolean_mask(position, inside)], axis=1)
    top_values = tf.tensor_scatter_nd_update(
        tf.fill([num_rows, window], tf.constant(-np.inf, tf.float32)), at, tf.boolean_mask(values, inside)
    )
    top_idx = tf.tensor_scatter_nd_update(tf.zeros([num_rows, window], tf.int32), at, tf.boolean_mask(box_idx, inside))
    return top_values, top_idx


def _soft_rows(row_scores, row_boxes, per_row, iou_threshold, score_threshold, sigma):
    """Gaussian soft-NMS of every row with TensorFlow's kernel (`NonMaxSuppressionV5`).

    Returns kept_idx int32 `[R, per_row]` (-1 padding) and the rescored kept_scores float32
    `[R, per_row]` (-inf padding), in selection order.
    """

    def one_row(args):
        scores, boxes = args
        idx, rescored, count = _nms_v5(boxes, scores, per_row, iou_threshold, score_threshold, sigma, pad=True)
        used = tf.range(per_row) < count
        return tf.where(used, idx, -1), tf.where(used, rescored, -np.inf)

    return tf.map_fn(
        one_row,
        (row_scores, _zero_area_if_inverted(row_boxes)),
        fn_output_signature=(tf.TensorSpec([per_row], tf.int32), tf.TensorSpec([per_row], tf.float32)),
    )


# ----------------------------------------------------------------------------- batched: API


def _check_batched_inputs(boxes, scores, labels):
    boxes = _to_float32("boxes", boxes)
    scores = _to_float32("scores", scores)
    check_rank(boxes, "boxes", (3, 4), "[B, N, 4] or [B, N, C, 4]")
    if labels is None:
        check_rank(scores, "scores", (3,), "[B, N, C]")
    else:
        check_rank(scores, "scores", (2,), "[B, N] (with `labels`)")
        if boxes.shape.rank != 3:
            raise ValueError(f"with `labels`, `boxes` must have shape [B, N, 4], got shape {boxes.shape}.")
    box_dims = _dims(boxes)
    score_dims = _dims(scores)
    message = (
        "`boxes` [B, N, 4] or [B, N, C, 4] and `scores` [B, N, C] must agree on B, N (and C); "
        f"got boxes {boxes.shape} and scores {scores.shape}."
    )
    if labels is not None:
        message = (
            "`boxes` [B, N, 4] and `scores` [B, N] must agree on B and N; "
            f"got boxes {boxes.shape} and scores {scores.shape}."
        )
    pairs = [(box_dims[-1], 4), (box_dims[0], score_dims[0]), (box_dims[1], score_dims[1])]
    if boxes.shape.rank == 4:
        pairs.append((box_dims[2], score_dims[2]))
    checks = _shape_check(pairs, message)
    if labels is not None:
        labels = tf.convert_to_tensor(labels)
        if not labels.dtype.is_integer:
            raise TypeError(f"`labels` must have an integer dtype, got {labels.dtype.name}.")
        if labels.shape.rank != 2:
            raise ValueError(f"`labels` must have shape [B, N] like `scores`, got shape {labels.shape}.")
        label_dims = _dims(labels)
        checks += _shape_check(
            [(label_dims[0], score_dims[0]), (label_dims[1], score_dims[1])],
            f"`labels` must have the shape of `scores` [B, N], got labels {labels.shape} and scores {scores.shape}.",
        )
        labels = tf.cast(labels, tf.int32)
    if checks:
        with tf.control_dependencies(checks):
            boxes = tf.identity(boxes)
    return boxes, scores, labels


def _scores_from_labels(scores, labels):
    """scores [B, N] + labels [B, N] -> per-class scores [B, N, C], -inf off the label."""
    num_classes = tf.maximum(tf.reduce_max(tf.concat([tf.reshape(labels, [-1]), [-1]], 0)) + 1, 1)
    on_label = tf.equal(labels[..., None], tf.range(num_classes))
    return tf.where(on_label, scores[..., None], -np.inf)


def _best_class(scores):
    """The best score of each box and its class (lowest class index among equal maxima)."""
    best = tf.reduce_max(scores, axis=-1)
    num_classes = tf.shape(scores)[-1]
    label = first_index_of_max(scores, best, -1, num_classes)
    return best, tf.minimum(label, num_classes - 1)


def _merge(kept_idx, kept_scores, max_detections):
    """Merges kept pairs of all classes of each image by score.

    Args:
        kept_idx, kept_scores: `[B, C, K]` in selection order within each class.

    Returns:
        (scores, label, box index, valid), each `[B, D]`; order: score descending, ties by lower
        class, then selection order (top_k keeps the lower flat index first).
    """
    batch, num_classes, per_class = tf.unstack(tf.shape(kept_idx))
    flat_scores = tf.reshape(kept_scores, [batch, num_classes * per_class])
    flat_idx = tf.reshape(kept_idx, [batch, num_classes * per_class])
    k = tf.minimum(max_detections, num_classes * per_class)
    top_scores, position = tf.math.top_k(flat_scores, k=k)
    pad = [[0, 0], [0, max_detections - k]]
    top_scores = tf.pad(top_scores, pad, constant_values=-np.inf)
    position = tf.pad(position, pad)
    valid = top_scores > -np.inf
    label = tf.where(valid, position // per_class, -1)
    box_idx = tf.where(valid, tf.gather(flat_idx, position, batch_dims=1), 0)
    return top_scores, label, box_idx, valid


def _empty_result(batch, max_detections):
    return {
        "boxes": tf.fill([batch, max_detections, 4], -1.0),
        "scores": tf.zeros([batch, max_detections], tf.float32),
        "labels": tf.fill([batch, max_detections], -1),
        "num_detections": tf.zeros([batch], tf.int32),
    }


def check_nms_options(
    *,
    iou_threshold,
    score_threshold,
    max_detections,
    max_detections_per_class,
    class_agnostic,
    soft_nms_sigma,
):
    """Validates the settings of `batched_non_max_suppression`; returns them as plain Python values.

    Raises:
        TypeError / ValueError naming the argument, its value and what was expected.
    """
    if not isinstance(class_agnostic, (bool, np.bool_)):
        raise TypeError(f"`class_agnostic` must be a bool, got {class_agnostic!r}.")
    return {
        "iou_threshold": _check_number("iou_threshold", iou_threshold, low=0.0, high=1.0),
        "score_threshold": _check_number("score_threshold", score_threshold, allow_neg_inf=True),
        "max_detections": _check_count("max_detections", max_detections, minimum=1),
        "max_detections_per_class": _check_count(
            "max_detections_per_class", max_detections_per_class, minimum=1, allow_none=True
        ),
        "class_agnostic": bool(class_agnostic),
        "soft_nms_sigma": _check_number("soft_nms_sigma", soft_nms_sigma, low=0.0),
    }


def batched_non_max_suppression(
    boxes,
    scores,
    labels=None,
    *,
    iou_threshold=0.5,
    score_threshold=0.05,
    max_detections=100,
    max_detections_per_class=None,
    class_agnostic=False,
    soft_nms_sigma=0.0,
):
    """Per-class greedy NMS for a batch of images, merged by score and padded.

    For every image and class: greedy NMS (see the module docstring: ties by lower index, IoU
    strictly greater than `iou_threshold` suppresses, `score <= score_threshold` dropped first,
    degenerate boxes never suppress), at most `max_detections_per_class` boxes. The kept
    (box, class) pairs of all classes are then merged by score (ties: lower class first, then
    selection order) and the first `max_detections` are returned. Not XLA-compilable.

    `class_agnostic=True` runs one NMS over all boxes of an image, each box taking its best class
    (the lowest class index among equal best scores) and, with per-class boxes, that class's box;
    `max_detections` caps it, `max_detections_per_class` is unused and the detections come in
    selection order (score descending, ties by lower box index).

    `soft_nms_sigma > 0` switches to Gaussian soft-NMS with TensorFlow's convention (Bodla et al.,
    2017, as in `tf.image.non_max_suppression_with_scores` of TF 2.21): the box with the highest
    current score is selected, every remaining box's score is multiplied by
    `exp(-0.5 * iou**2 / soft_nms_sigma)`, boxes whose rescored score is `<= score_threshold` are
    dropped, and the returned scores are the rescored ones. As in TF 2.21, `iou_threshold` has no
    effect in this mode (there is no hard suppression). This mode runs one kernel call per
    (image, class) and is slower than the hard mode.

    Reference: Girshick et al., "R-CNN", CVPR 2014 (greedy NMS); Bodla et al., "Soft-NMS --
    Improving Object Detection With One Line of Code", ICCV 2017.

    Args:
        boxes: `[B, N, 4]` xyxy boxes shared by all classes, or `[B, N, C, 4]` one box per class.
        scores: `[B, N, C]` class scores; or `[B, N]` when `labels` is given.
        labels: optional int `[B, N]`: the class of each box when `scores` is `[B, N]` (one
            class per box, as from a detector that already picked it); negative labels drop the box.
        iou_threshold: number in [0, 1].
        score_threshold: finite number or -inf; scores `<=` it are dropped.
        max_detections: int >= 1, detections returned per image (D).
        max_detections_per_class: int >= 1 or None (= `max_detections`).
        class_agnostic: bool, NMS across classes.
        soft_nms_sigma: number >= 0; 0 is hard NMS.

    Returns:
        dict with `"boxes"` float32 `[B, D, 4]` (input coordinates, padding -1), `"scores"` float32
        `[B, D]` (padding 0), `"labels"` int32 `[B, D]` (padding -1) and `"num_detections"` int32
        `[B]`; valid detections come first, by decreasing score.

    Example:
        >>> boxes = tf.constant([[[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]]], tf.float32)
        >>> scores = tf.constant([[[0.9, 0.1], [0.8, 0.7], [0.2, 0.6]]])
        >>> out = batched_non_max_suppression(boxes, scores, max_detections=4)
        >>> out["labels"].numpy(), out["num_detections"].numpy()
        (array([[0, 1, 1, 0]], dtype=int32), array([4], dtype=int32))
    """
    options = check_nms_options(
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
        max_detections_per_class=max_detections_per_class,
        class_agnostic=class_agnostic,
        soft_nms_sigma=soft_nms_sigma,
    )
    max_detections = options["max_detections"]
    options["per_class"] = options.pop("max_detections_per_class") or max_detections
    boxes, scores, labels = _check_batched_inputs(boxes, scores, labels)
    if labels is not None:
        scores = _scores_from_labels(scores, labels)
    num_boxes = boxes.shape[1]
    if isinstance(num_boxes, int) and num_boxes >= _MAX_BOXES:
        raise ValueError(f"`boxes` may hold at most {_MAX_BOXES - 1} boxes per image, got {num_boxes}.")
    batch, n, num_classes = _dims(scores)
    if all(isinstance(d, int) for d in (batch, n, num_classes)):
        if batch * n * num_classes == 0:
            return _empty_result(batch, max_detections)
        return _with_static_shapes(_batched(boxes, scores, **options), batch, max_detections)
    out = tf.cond(
        tf.reduce_all(tf.shape(scores) > 0),
        lambda: _batched(boxes, scores, **options),
        lambda: _empty_result(tf.shape(scores)[0], max_detections),
    )
    return _with_static_shapes(out, scores.shape[0], max_detections)


def _with_static_shapes(out, batch, max_detections):
    out["boxes"] = tf.ensure_shape(out["boxes"], [batch, max_detections, 4])
    out["scores"] = tf.ensure_shape(out["scores"], [batch, max_detections])
    out["labels"] = tf.ensure_shape(out["labels"], [batch, max_detections])
    out["num_detections"] = tf.ensure_shape(out["num_detections"], [batch])
    return out


def _batched(
    boxes, scores, *, max_detections, per_class, iou_threshold, score_threshold, class_agnostic, soft_nms_sigma
):
    """Batched NMS on non-empty inputs (B >= 1, N >= 1); see `batched_non_max_suppression`."""
    # NaN scores count as -inf; the per-class hard path never ranks them (NaN > threshold is False)
    # and cleans only the rows it ranks, so that it reads the [B, N, C] scores once
    per_class_boxes = boxes.shape.rank == 4
    boxes, scores = _drop_non_finite_boxes(boxes, scores)
    batch, n, num_classes = tf.unstack(tf.shape(scores))
    if class_agnostic:
        row_scores, best_label = _best_class(_finite_scores(scores))  # [B, N]
        if per_class_boxes:
            boxes = tf.gather(boxes, best_label, batch_dims=2)  # [B, N, 4]
            per_class_boxes = False
        rows_per_image = 1
        per_row = max_detections
    else:
        rows_per_image = num_classes
        per_row = per_class

    def finish(kept_idx, kept_scores):
        """Merges the kept (box, class) pairs of every row of an image by score; the output dict."""
        kept_idx = tf.reshape(kept_idx, [batch, rows_per_image, per_row])
        kept_scores = tf.reshape(kept_scores, [batch, rows_per_image, per_row])
        top_scores, label, box_idx, valid = _merge(kept_idx, kept_scores, max_detections)
        image = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(box_idx))
        if class_agnostic:
            label = tf.where(valid, tf.gather(best_label, box_idx, batch_dims=1), -1)
        if per_class_boxes:
            out_boxes = tf.gather_nd(boxes, tf.stack([image, box_idx, tf.maximum(label, 0)], axis=-1))
        else:
            out_boxes = tf.gather_nd(boxes, tf.stack([image, box_idx], axis=-1))
        return {
            "boxes": tf.where(valid[..., None], out_boxes, -1.0),
            "scores": tf.where(valid, top_scores, 0.0),
            "labels": label,
            "num_detections": tf.reduce_sum(tf.cast(valid, tf.int32), axis=1),
        }

    def gather_candidates(rows, box_idx):
        image = tf.broadcast_to((rows // rows_per_image)[:, None], tf.shape(box_idx))
        if per_class_boxes:
            cls = tf.broadcast_to((rows % rows_per_image)[:, None], tf.shape(box_idx))
            return tf.gather_nd(boxes, tf.stack([image, box_idx, cls], axis=-1))
        return tf.gather_nd(boxes, tf.stack([image, box_idx], axis=-1))

    def class_rows():
        return tf.reshape(tf.transpose(_finite_scores(scores), [0, 2, 1]), [batch * num_classes, n])

    if soft_nms_sigma > 0:
        if not class_agnostic:
            row_scores = class_rows()
        if per_class_boxes:
            row_boxes = tf.reshape(tf.transpose(boxes, [0, 2, 1, 3]), [-1, n, 4])
        else:
            row_boxes = tf.repeat(boxes, rows_per_image, axis=0)
        kept_idx, kept_scores = _soft_rows(
            row_scores, row_boxes, per_row, iou_threshold, score_threshold, soft_nms_sigma
        )
    elif class_agnostic:
        kept_idx, kept_scores = _greedy_rows(
            lambda w: tf.math.top_k(row_scores, k=w), lambda rows: tf.gather(row_scores, rows), n, batch,
            per_row, gather_candidates, iou_threshold, score_threshold,
        )
    else:
        # few candidates above the threshold (a detector's usual case): sort only those
        candidates = scores > score_threshold
        count = tf.math.count_nonzero(candidates, dtype=tf.int32)
        sparse = count <= tf.size(scores) // _SPARSE_FRACTION

        def first_top(w):
            return tf.cond(
                sparse,
                lambda: _sparse_class_top(scores, candidates, w),
                lambda: tuple(tf.math.top_k(class_rows(), k=w)),
            )

        def get_rows(rows):
            # the full scores of a few (image, class) rows: one transpose of `scores`, not a [rows, N, C] gather
            # (which copies every class of each row's image)
            by_class = tf.transpose(scores, [0, 2, 1])
            return _finite_scores(tf.gather_nd(by_class, tf.stack([rows // num_classes, rows % num_classes], -1)))

        def windows():
            # with few candidates, a first window that holds every row's candidates (up to _MAX_SPARSE_WINDOW) is
            # final for every row: no row is solved twice
            default_window = per_row + max(per_row // 4, 8)
            busiest = tf.reduce_max(tf.math.count_nonzero(candidates, axis=1, dtype=tf.int32))
            window = tf.where(sparse, tf.clip_by_value(busiest, default_window,
                                                       max(default_window, _MAX_SPARSE_WINDOW)), default_window)
            return finish(*_greedy_rows(
                first_top, get_rows, n, batch * num_classes, per_row, gather_candidates, iou_threshold,
                score_threshold, window=window,
            ))

        def kernel_directly():
            return _combined_kernel(boxes, scores, per_row, max_detections, iou_threshold, score_threshold)

        # the kernel on the scores themselves when its order cannot differ from the definition's, else windows of
        # distinct ranks (exact with ties)
        few = count <= tf.size(scores) // _DIRECT_FRACTION
        direct = tf.cond(few, lambda: _kernel_order_is_exact(boxes, scores, candidates), lambda: tf.constant(False))
        return tf.cond(direct, kernel_directly, windows)
    return finish(kept_idx, kept_scores)


def _kernel_order_is_exact(boxes, scores, candidates):
    """Whether `CombinedNonMaxSuppression` run directly on `scores` gives this module's result: no two candidates
    of one image share a score (the kernel's tie order is unspecified, the definition's is not), no box is
    inverted (the kernel would sort its corners; `_zero_area_if_inverted` would change the boxes it returns), and
    every candidate scores above -1 (the kernel sorts its unused slots, score -1, among the kept boxes).
    One hash of the candidates' (image, score bits), no sort."""
    where = tf.where(candidates)
    values = tf.gather_nd(scores, where)
    above_fillers = tf.reduce_all(values > -1.0)
    values = tf.where(tf.equal(values, 0.0), 0.0, values)  # -0.0 and 0.0 tie but differ in bits
    bits = tf.cast(tf.bitcast(values, tf.int32), tf.int64) & 0xFFFFFFFF
    keys = where[:, 0] * (1 << 32) + bits
    distinct = tf.equal(tf.size(tf.unique(keys).y), tf.size(keys))
    upright = tf.reduce_all(boxes[..., 2:] >= boxes[..., :2])
    return distinct & upright & above_fillers


def _combined_kernel(boxes, scores, per_class, max_detections, iou_threshold, score_threshold):
    """Per-class NMS by one `CombinedNonMaxSuppression` call on the scores themselves (see
    `_kernel_order_is_exact` for when that is exact): the output dict of `batched_non_max_suppression`."""
    per_class_boxes = boxes if boxes.shape.rank == 4 else boxes[:, :, None, :]
    result = _combined_nms(per_class_boxes, scores, per_class, max_detections, iou_threshold, score_threshold)
    valid = tf.range(max_detections)[None, :] < result.valid_detections[:, None]
    return {
        "boxes": tf.where(valid[..., None], result.nmsed_boxes, -1.0),
        "scores": tf.where(valid, result.nmsed_scores, 0.0),
        "labels": tf.where(valid, tf.cast(result.nmsed_classes, tf.int32), -1),
        "num_detections": result.valid_detections,
    }
