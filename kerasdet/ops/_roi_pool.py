"""Exact quantised RoI pooling: RoI max pooling, position-sensitive RoI pooling and spatial pyramid pooling.

The three ops share the quantisation of DESIGN.md §4: roi corners are scaled by `spatial_scale` and
rounded half away from zero; a side of `n` bins over a roi of integer size `size` has bins
`[floor(i * size / n) + start, ceil((i + 1) * size / n) + start)` clipped to the feature map (computed in
float32, as Caffe's and torchvision's kernels do). Every bin is therefore an integer rectangle, and the
ops reduce integer rectangles exactly:

- the max over a rectangle comes from a 2-D sparse table: level `(a, b)` holds, at `(y, x)`, the max
  over the `2**a x 2**b` window starting there (built by shifted `tf.maximum`). A rectangle of size
  `h x w` is covered by four such windows with `2**a <= h < 2**(a+1)` and `2**b <= w < 2**(b+1)`
  anchored at its four corners, so one gather of four rows per bin gives its exact max, and the
  gradient of the max flows to the argmax element;
- the mean over a rectangle comes from a summed-area table accumulated in float64 (four gathers per
  bin), exact to float64 rounding whatever the map size.

Memory: the sparse table holds `La * Lb` copies of the feature map, `La = floor(log2(h)) + 1` for the
tallest bin `h` (likewise `Lb` for the widest): 3 x 3 copies for 7x7 bins of rois up to 400 px on a
stride-16 map. Under XLA (`jit_compile=True`), whose shapes are static, room for
`(floor(log2(H)) + 1) * (floor(log2(W)) + 1)` copies is allocated (49 for a 64 x 64 map) and only the
needed levels are computed. Tracing for XLA is recognised with the check TensorFlow's own control flow
uses (`control_flow_util.GraphOrParentsInXlaContext`).

Speed: TensorFlow's CPU kernels write each of the four window gathers and each pairwise maximum out to
memory, and each doubling step of the table twice more. A traced forward pass (no gradient tape) over a map
whose height and width are known when traced therefore runs the table and the maxima as one XLA computation
(`_fused_maxima`; XLA compiles once per combination of input shapes and level counts, about 0.45 s each on
2 CPU cores; 0.83x `crop_and_resize` + max pool against 1.69x for TensorFlow's ops, benchmarks/RESULTS.md).
Eager calls, training (a tape watching the features), maps of unknown size and exports made with
`kerasdet.export.saved_model` (`without_fused_kernel`; serving then needs no XLA) run the same table as
TensorFlow ops. The two give identical values. `KERASDET_FUSED_ROI_POOL=0` switches the kernel off.

Padded roi rows (all four coordinates -1), rois with non-finite coordinates and rois whose size overflows
float32 give zeros.
"""

from __future__ import annotations

import contextlib
import os
import threading

import tensorflow as tf

from kerasdet.ops._checks import output_size_pair, positive_ints, positive_scale, rois_tensor
from kerasdet.ops._roi_align import _position_groups
from kerasdet.ops.boxes import padding_rows

__all__ = ["roi_pool", "ps_roi_pool", "spatial_pyramid_pool", "without_fused_kernel"]

_MAX_LEVEL = 30  # windows up to 2**30 pixels: far beyond any feature map


# --------------------------------------------------------------------------- input checks


def _features_tensor(features, name="features") -> tf.Tensor:
    if not isinstance(features, (tf.Tensor, tf.Variable)):
        try:
            features = tf.convert_to_tensor(features)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be a float tensor [B, H, W, C]; got {type(features).__name__}") from err
    if not features.dtype.is_floating:
        raise TypeError(f"`{name}` must be a float tensor [B, H, W, C]; got dtype {features.dtype.name}")
    if features.shape.rank is not None and features.shape.rank != 4:
        raise ValueError(f"`{name}` must have shape [B, H, W, C]; got shape {tuple(features.shape)}")
    return features


# --------------------------------------------------------------------------- quantisation


def _round_half_away(x: tf.Tensor) -> tf.Tensor:
    """C's `round` on float32 (2.5 -> 3, -2.5 -> -3), exact: `floor(|x|) + (frac >= 0.5)`."""
    ax = tf.abs(x)
    whole = tf.floor(ax)
    rounded = whole + tf.cast(ax - whole >= 0.5, x.dtype)
    return tf.where(x < 0, -rounded, rounded)


def _roi_corners(rois: tf.Tensor, spatial_scale: float):
    """Scaled, rounded corners `(x1, y1, x2, y2)` each `[B, R]` float32, and a `[B, R]` mask of usable rois."""
    padding = padding_rows(rois)
    scaled = rois * tf.constant(spatial_scale, tf.float32)
    finite = tf.reduce_all(tf.math.is_finite(scaled), axis=-1)
    usable = tf.logical_and(tf.logical_not(padding), finite)
    scaled = tf.where(usable[..., None], scaled, tf.zeros_like(scaled))
    corners = _round_half_away(scaled)
    x1, y1, x2, y2 = tf.unstack(corners, 4, axis=-1)
    return (x1, y1, x2, y2), usable


def _bin_ranges(start, end, count: int, limit, plus_one: bool, usable):
    """Integer bin ranges `[lo, hi)` (int32 `[B, R, count]`) of one roi side, clipped to `[0, limit]`.

    `size = max(end - start (+ 1), 1)`, `bin = size / count` (float32) and bin `i` spans
    `[floor(i * bin) + start, ceil((i + 1) * bin) + start)`. Unusable rois get empty ranges `[0, 0)`.
    """
    size = end - start + 1.0 if plus_one else end - start
    # Grappler and XLA rewrite `x / constant` in float32 as `x * (1 / constant)`, which is 1 ulp off
    # (3 / 7 * 7 > 3) and moves ceil(); in float64 that error cannot cross a float32 rounding boundary
    # (a quotient of integers below 2**24 by a count below 2**20 lies at least 2**-45 relative away
    # from one), so the cast back gives the correctly rounded float32 quotient.
    size = tf.cast(tf.maximum(size, 1.0), tf.float64)
    bin_size = tf.cast(size / tf.constant(float(count), tf.float64), tf.float32)
    index = tf.range(count, dtype=tf.float32)
    lo = tf.floor(index * bin_size[..., None]) + start[..., None]
    hi = tf.math.ceil((index + 1.0) * bin_size[..., None]) + start[..., None]
    limit = tf.cast(limit, tf.float32)
    # corners near float32's limit can overflow `size` to inf and `0 * inf` to NaN: such bins are empty
    keep = tf.logical_and(usable[..., None], tf.math.is_finite(lo + hi))
    lo = tf.clip_by_value(tf.where(keep, lo, 0.0), 0.0, limit)
    hi = tf.clip_by_value(tf.where(keep, hi, 0.0), 0.0, limit)
    return tf.cast(lo, tf.int32), tf.cast(hi, tf.int32)


def _roi_bins(features, rois, ph, pw, spatial_scale, plus_one):
    """Row and column ranges of every roi's bins: `(y_lo, y_hi)` `[B, R, ph]`, `(x_lo, x_hi)` `[B, R, pw]`."""
    (x1, y1, x2, y2), usable = _roi_corners(rois, spatial_scale)
    shape = tf.shape(features)
    y_lo, y_hi = _bin_ranges(y1, y2, ph, shape[1], plus_one, usable)
    x_lo, x_hi = _bin_ranges(x1, x2, pw, shape[2], plus_one, usable)
    return (y_lo, y_hi), (x_lo, x_hi)


# --------------------------------------------------------------------------- max over integer rectangles


def _floor_log2(n: tf.Tensor) -> tf.Tensor:
    """`floor(log2(n))` of int32 `n >= 1`, exactly (by comparison with powers of two)."""
    powers = tf.constant([1 << k for k in range(1, _MAX_LEVEL + 1)], tf.int32)
    return tf.reduce_sum(tf.cast(n[..., None] >= powers, tf.int32), axis=-1)


def _in_xla_context() -> bool:
    """Whether the op is being traced for XLA (`tf.function(jit_compile=True)`, Keras `jit_compile`).

    Uses the check TensorFlow's own control flow uses; should that private API move, answers True
    whenever tracing, which selects the always-compilable static-capacity path.
    """
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph()))
    except Exception:  # pragma: no cover - depends on TensorFlow internals
        return not tf.executing_eagerly()


def _level_count(size, ranges, axis_name):
    """`(needed, capacity)`: doubling levels one axis of the sparse table needs, and how many it holds.

    `needed` covers the longest nonempty range: a Python int eagerly, a scalar tensor when traced.
    `capacity` is None except under XLA, which needs static shapes: then the table holds
    `floor(log2(size)) + 1` levels of the static map size, of which only `needed` are computed.
    """
    capacity = None
    if _in_xla_context():
        if not isinstance(size, int):
            raise ValueError(
                f"RoI max pooling under jit_compile=True needs a static feature map {axis_name}; got an unknown "
                "one at trace time (give the model a fixed input size, or run without jit_compile)"
            )
        capacity = max(size, 1).bit_length()
    longest = tf.constant(1, tf.int32)
    for lo, hi in ranges:
        longest = tf.maximum(longest, tf.reduce_max(tf.concat([tf.reshape(hi - lo, [-1]), [1]], 0)))
    needed = _floor_log2(longest) + 1
    if tf.executing_eagerly():
        return int(needed), None
    if capacity is not None:
        needed = tf.minimum(needed, capacity)
    return needed, capacity


def _doubling_levels(x: tf.Tensor, axis: int, needed, capacity=None) -> tf.Tensor:
    """Stacks `[levels, *x.shape]`: level `k` is the max of `x` over windows of `2**k` along `axis`.

    Entry `p` of level `k` holds the max over `[p, p + 2**k)`; entries whose window runs past the end
    hold garbage (wrapped values) and are never read. Eagerly (`needed` an int) the levels come from a
    Python loop; traced, from a `tf.while_loop` (one level per iteration, so XLA cannot fuse the
    doubling chain into a recomputation) into `capacity` slots (default `needed`), of which the
    first `needed` are written and the rest stay zero.
    """
    if isinstance(needed, int):
        levels = [x]
        for k in range(1, needed):
            prev = levels[-1]
            levels.append(tf.maximum(prev, tf.roll(prev, shift=-(1 << (k - 1)), axis=axis)))
        return tf.stack(levels)

    size = needed if capacity is None else capacity
    array = tf.TensorArray(x.dtype, size=size, element_shape=x.shape).write(0, x)

    def body(k, prev, array):
        shift = -tf.bitwise.left_shift(tf.constant(1, tf.int32), k - 1)
        nxt = tf.maximum(prev, tf.roll(prev, shift=shift, axis=axis))
        return k + 1, nxt, array.write(k, nxt)

    _, _, array = tf.while_loop(
        lambda k, prev, array: k < needed,
        body,
        (tf.constant(1), x, array),
        maximum_iterations=None if capacity is None else max(capacity - 1, 0),
    )
    return array.stack()


class _MaxTable:
    """The 2-D sparse table of a `[B, H, W, C]` map, flattened to rows of C values.

    Row `(((b_lvl * La + a_lvl) * B + n) * H + y) * W + x` holds the max of map `n` over
    `[y, y + 2**a_lvl) x [x, x + 2**b_lvl)`.
    """

    def __init__(self, features: tf.Tensor, row_ranges, col_ranges, levels=None):
        """`levels`: None counts the doubling levels the ranges need; or `(rows, cols)` given (the fused kernel)."""
        shape = tf.shape(features)
        height = features.shape[1] if features.shape[1] is not None else shape[1]
        width = features.shape[2] if features.shape[2] is not None else shape[2]
        if levels is None:
            rows_needed, rows_capacity = _level_count(height, row_ranges, "height")
            cols_needed, cols_capacity = _level_count(width, col_ranges, "width")
        else:
            (rows_needed, cols_needed), rows_capacity, cols_capacity = levels, None, None
        by_rows = _doubling_levels(features, 1, rows_needed, rows_capacity)  # [La, B, H, W, C]
        table = _doubling_levels(by_rows, 3, cols_needed, cols_capacity)  # [Lb, La, B, H, W, C]
        self.rows_levels = rows_needed if rows_capacity is None else rows_capacity
        channels = features.shape[3] if features.shape[3] is not None else shape[3]
        self.table = tf.reshape(table, [-1, channels])
        self.batch, self.height, self.width = (tf.cast(shape[i], tf.int64) for i in range(3))
        self.empty_map = features.shape[1] == 0 or features.shape[2] == 0

    def rect_max(self, y_range, x_range) -> tf.Tensor:
        """Max over rectangles `[y_lo, y_hi) x [x_lo, x_hi)` with rows `[B, R, P]`, columns `[B, R, Q]` ->
        `[B, R, P, Q, C]`, 0 for empty rectangles."""
        (y_lo, y_hi), (x_lo, x_hi) = y_range, x_range
        if self.empty_map:  # every bin is empty; there is no row to gather
            shape = tf.concat([tf.shape(y_lo), tf.shape(x_lo)[-1:], tf.shape(self.table)[-1:]], 0)
            return tf.zeros(shape, self.table.dtype)
        ya, y_starts, y_empty = _window_starts(y_lo, y_hi)
        xb, x_starts, x_empty = _window_starts(x_lo, x_hi)
        levels = tf.cast(xb[..., None, :] * self.rows_levels + ya[..., :, None], tf.int64)  # [B, R, P, Q]
        n = tf.range(tf.shape(y_lo, out_type=tf.int64)[0], dtype=tf.int64)[:, None, None, None]
        base = (levels * self.batch + n) * self.height  # [B, R, P, Q]
        value = None
        for ys in y_starts:
            for xs in x_starts:
                y = tf.cast(ys, tf.int64)[..., :, None]
                x = tf.cast(xs, tf.int64)[..., None, :]
                window = tf.gather(self.table, (base + y) * self.width + x)  # [B, R, P, Q, C]
                # pairwise maximum: faster than a stacked reduce_max, and its gradient picks one
                # window (the first of equal ones) instead of splitting among them
                value = window if value is None else tf.maximum(value, window)
        empty = tf.logical_or(y_empty[..., :, None], x_empty[..., None, :])
        return tf.where(empty[..., None], tf.zeros_like(value), value)


# --------------------------------------------------------------------------- the fused forward kernel

_fused_kernel_state = threading.local()  # per thread: tracing happens in the caller's thread


def _fused_kernel_allowed() -> bool:
    return (getattr(_fused_kernel_state, "depth", 0) == 0
            and os.environ.get("KERASDET_FUSED_ROI_POOL", "1").strip().lower() not in ("0", "false", "no", "off"))


@contextlib.contextmanager
def without_fused_kernel():
    """Inside this block (in this thread) RoI max pooling and spatial pyramid pooling are traced with TensorFlow's
    own kernels only, never the XLA-compiled forward kernel. `kerasdet.export.saved_model` traces exports in it, so
    that serving needs no XLA; use it around other exports (`model.export`, `tf.saved_model.save`) too. The
    environment variable `KERASDET_FUSED_ROI_POOL=0` switches the kernel off everywhere (for devices without XLA).

    Example:
        >>> with without_fused_kernel():
        ...     pooled = tf.function(roi_pool)(features, rois, 7, 1 / 16)
    """
    _fused_kernel_state.depth = getattr(_fused_kernel_state, "depth", 0) + 1
    try:
        yield
    finally:
        _fused_kernel_state.depth -= 1


def _records_gradient(features) -> bool:
    """Whether a gradient tape watches `features` (True when that cannot be told)."""
    try:
        from tensorflow.python.eager import record

        return bool(record.should_record_backprop([features]))
    except Exception:  # pragma: no cover - depends on TensorFlow internals
        return True


def _use_fused_kernel(features) -> bool:
    """The fused kernel runs in traced functions (`tf.function`, Keras' predict function), where one trace serves
    many calls of the same shapes, over maps whose height and width are known when traced; not eagerly (every new
    shape or level count would compile anew), not inside XLA (which fuses the table anyway), not where a tape
    watches the features (training takes TensorFlow's ops directly), not in `without_fused_kernel`."""
    height, width = features.shape[1], features.shape[2]
    return (not tf.executing_eagerly() and height is not None and width is not None and height > 0 and width > 0
            and _fused_kernel_allowed() and not _in_xla_context() and not _records_gradient(features))


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def _fused_maxima(features, grids, row_levels, col_levels):
    """The sparse table and the maxima of every grid's bins in one XLA computation. The level counts come in as
    the lengths of `row_levels` / `col_levels`: static for XLA (one trace serves every count; XLA compiles once per
    combination of input shapes and level counts)."""
    table = _MaxTable(features, None, None, levels=(tf.shape(row_levels)[0], tf.shape(col_levels)[0]))
    return [table.rect_max(rows, cols) for rows, cols in grids]


def _ops_maxima(features, grids):
    """The maxima of every grid's bins through TensorFlow's ops (one table for all grids)."""
    table = _MaxTable(features, [g[0] for g in grids], [g[1] for g in grids])
    return [table.rect_max(rows, cols) for rows, cols in grids]


def _bin_maxima(features, grids):
    """`[B, R, P, Q, C]` maxima over the bins of each `(rows, cols)` grid (`_roi_bins`), one table for all.

    TensorFlow's CPU kernels write each of the four window gathers and each pairwise maximum out to memory; XLA
    fuses the gathers into the maximum and the table's doubling steps into one pass each (about 2x faster on the
    benchmark's case). So where `_use_fused_kernel` allows, the forward pass is one XLA computation; everywhere
    else the same table runs as TensorFlow ops. Both give the same values exactly. A trace made without a tape and
    differentiated later (a cached `tf.function` called under a tape) gets its gradient from TensorFlow's ops,
    recomputed (`_fused_maxima_gradient`): the fused kernel's own gradient would carry its loop state across XLA's
    boundary.
    """
    if not _use_fused_kernel(features):
        return _ops_maxima(features, grids)
    rows_needed, _ = _level_count(features.shape[1], [g[0] for g in grids], "height")
    cols_needed, _ = _level_count(features.shape[2], [g[1] for g in grids], "width")
    markers = [tf.zeros(tf.reshape(n, [1]), tf.int8) for n in (rows_needed, cols_needed)]
    outputs = _fused_maxima(features, list(grids), *markers)
    # the kernel's outputs pass through one IdentityN whose gradient (registered once, below) recomputes the maxima
    # with TensorFlow's ops from the op's own inputs: nothing is held in a closure (tf.custom_gradient would register
    # a new gradient, holding the whole graph, at every trace)
    flat_grids = [t for rows, cols in grids for t in (*rows, *cols)]
    with tf.compat.v1.get_default_graph().gradient_override_map({"IdentityN": _GRADIENT_NAME}):
        passed = tf.identity_n([tf.stop_gradient(o) for o in outputs] + [features] + flat_grids)
    return passed[:len(outputs)]


_GRADIENT_NAME = "KerasdetFusedRoIMaxima"


@tf.RegisterGradient(_GRADIENT_NAME)
def _fused_maxima_gradient(op, *upstream):
    """Gradient of `_bin_maxima`'s fused outputs w.r.t. the features: the maxima recomputed with TensorFlow's ops
    (IdentityN inputs: G outputs, the features, then 4 range tensors per grid)."""
    count = (len(op.inputs) - 1) // 5
    features = op.inputs[count]
    flat = list(op.inputs[count + 1:])
    grids = [((flat[4 * i], flat[4 * i + 1]), (flat[4 * i + 2], flat[4 * i + 3])) for i in range(count)]
    recomputed = _ops_maxima(features, grids)
    grad_ys = [tf.zeros_like(r) if g is None else g for r, g in zip(recomputed, upstream[:count])]
    gradient = tf.gradients(recomputed, features, grad_ys=grad_ys)[0]
    return [None] * count + [gradient] + [None] * (4 * count)


def _window_starts(lo, hi):
    """Per range `[lo, hi)`: the level `a` with `2**a <= hi - lo < 2**(a+1)`, the two window starts
    `lo` and `hi - 2**a` whose windows cover the range, and the empty mask (empty ranges read row 0)."""
    extent = hi - lo
    empty = extent <= 0
    level = _floor_log2(tf.maximum(extent, 1))
    second = hi - tf.bitwise.left_shift(tf.ones_like(level), level)
    zeros = tf.zeros_like(lo)
    return level, (tf.where(empty, zeros, lo), tf.where(empty, zeros, second)), empty


# --------------------------------------------------------------------------- public ops


def roi_pool(features, rois, output_size, spatial_scale=1.0) -> tf.Tensor:
    """RoI max pooling (Fast R-CNN), exact Caffe/torchvision quantisation.

    Each roi is scaled by `spatial_scale`, its corners rounded half away from zero, and divided into
    `ph x pw` integer bins (`size = max(end - start + 1, 1)`, bin `i` spans
    `[floor(i * size / ph) + start, ceil((i + 1) * size / ph) + start)` clipped to the map); each output is
    the max over its bin, 0 for an empty bin. Padded roi rows (all -1) give zeros. The gradient w.r.t.
    `features` flows to the argmax of each bin (to one of them where several elements tie).

    Runs eagerly, in `tf.function`, and under `tf.function(jit_compile=True)` when the feature map's
    height and width are static at trace time (XLA needs a static bound on the table's size; with an
    unknown height or width it raises a ValueError saying so). Memory: a sparse table of
    `La * Lb` copies of the map, the levels the largest bin needs (under XLA, room for
    `(floor(log2 H) + 1) * (floor(log2 W) + 1)` copies), plus four gathers of the output's size.

    Reference: R. Girshick, "Fast R-CNN", ICCV 2015.

    Args:
        features: float tensor `[B, H, W, C]`.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.
        output_size: int `k` (a `k x k` grid) or a pair `(ph, pw)`.
        spatial_scale: feature-map pixels per input pixel, e.g. `1 / 16`.

    Returns:
        `[B, R, ph, pw, C]` of the dtype of `features`.

    Example:
        >>> fmap = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
        >>> roi_pool(fmap, [[[0., 0., 3., 3.]]], 2)[0, 0, :, :, 0].numpy()
        array([[ 5.,  7.],
               [13., 15.]], dtype=float32)
    """
    features = _features_tensor(features)
    rois = rois_tensor(rois, features)
    ph, pw = output_size_pair(output_size)
    scale = positive_scale(spatial_scale)
    rows, cols = _roi_bins(features, rois, ph, pw, scale, plus_one=True)
    return _bin_maxima(features, [(rows, cols)])[0]


def spatial_pyramid_pool(features, rois, levels=(1, 2, 4), spatial_scale=1.0) -> tf.Tensor:
    """Spatial pyramid pooling of rois (SPP-net): RoI max pooling at several grid sizes, concatenated.

    For each level `l` (in the order given) the roi is max pooled over `l x l` bins with exactly the
    bins of `roi_pool(..., output_size=l)`; that `[l, l, C]` grid is flattened in (row, column, channel)
    order, i.e. channels vary fastest, then columns, then rows; the flattened levels are concatenated.
    So for `levels=(1, 2)` the output holds the 1x1 bin's C values, then bin (0, 0), (0, 1), (1, 0),
    (1, 1) of the 2x2 grid, C values each. One sparse table serves all levels. Runs under
    `tf.function(jit_compile=True)` on the same terms as `roi_pool` (static feature height and width).

    Reference: K. He, X. Zhang, S. Ren, J. Sun, "Spatial Pyramid Pooling in Deep Convolutional Networks
    for Visual Recognition", ECCV 2014.

    Args:
        features: float tensor `[B, H, W, C]`.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.
        levels: non-empty sequence of positive ints, the bins per side of each pyramid level.
        spatial_scale: feature-map pixels per input pixel.

    Returns:
        `[B, R, sum(l * l for l in levels) * C]` of the dtype of `features`.

    Example:
        >>> fmap = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
        >>> spatial_pyramid_pool(fmap, [[[0., 0., 3., 3.]]], levels=(1, 2))[0].numpy()
        array([[15.,  5.,  7., 13., 15.]], dtype=float32)
    """
    features = _features_tensor(features)
    rois = rois_tensor(rois, features)
    levels = positive_ints(levels, "levels")
    scale = positive_scale(spatial_scale)
    grids = [_roi_bins(features, rois, lv, lv, scale, plus_one=True) for lv in levels]
    shape = tf.shape(rois)
    parts = [tf.reshape(pooled, [shape[0], shape[1], -1]) for pooled in _bin_maxima(features, grids)]  # [B, R, l*l*C]
    out = tf.concat(parts, axis=-1)
    channels = features.shape[-1]
    if channels is not None:
        out = tf.ensure_shape(out, [None, None, sum(lv * lv for lv in levels) * channels])
    return out


def ps_roi_pool(features, rois, output_size, spatial_scale=1.0) -> tf.Tensor:
    """Position-sensitive RoI pooling (R-FCN), torchvision semantics.

    Roi corners are scaled and rounded half away from zero; `size = max(end - start, 1)`; the bins are
    those of `roi_pool`. Output bin `(i, j)` of output channel `d` is the mean of input channel
    `d * ph * pw + i * pw + j` over the bin, 0 for an empty bin. Means come from a float64 summed-area
    table (exact to float64 rounding); the gradient spreads evenly over each bin. Padded roi rows (all -1)
    give zeros. Runs eagerly, in `tf.function` and under `tf.function(jit_compile=True)` (any map size).

    Reference: J. Dai, Y. Li, K. He, J. Sun, "R-FCN: Object Detection via Region-based Fully
    Convolutional Networks", NeurIPS 2016.

    Args:
        features: float tensor `[B, H, W, C]` with `C` divisible by `ph * pw`.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows of -1 are padding.
        output_size: int `k` or a pair `(ph, pw)`.
        spatial_scale: feature-map pixels per input pixel.

    Returns:
        `[B, R, ph, pw, C // (ph * pw)]` of the dtype of `features`.

    Example:
        >>> fmap = tf.ones([1, 8, 8, 4 * 3])  # 3 output channels, 2 x 2 bins
        >>> ps_roi_pool(fmap, [[[0., 0., 8., 8.]]], 2).shape
        TensorShape([1, 1, 2, 2, 3])
    """
    features = _features_tensor(features)
    rois = rois_tensor(rois, features)
    ph, pw = output_size_pair(output_size)
    scale = positive_scale(spatial_scale)
    bins = ph * pw
    channels = features.shape[-1]
    if channels is not None and channels % bins != 0:
        raise ValueError(
            f"`features` channels must be divisible by ph * pw = {ph} * {pw} = {bins} for ps_roi_pool; "
            f"got features shape {tuple(features.shape)}"
        )
    (y_lo, y_hi), (x_lo, x_hi) = _roi_bins(features, rois, ph, pw, scale, plus_one=False)
    shape = tf.shape(features)
    batch, height, width = shape[0], shape[1], shape[2]
    depth = shape[3] // bins

    # summed-area table per bin position and image: [ph * pw * B, H + 1, W + 1, D], float64
    grouped = tf.cast(_position_groups(features, ph, pw), tf.float64)
    sat = tf.cumsum(tf.cumsum(grouped, axis=1), axis=2)
    sat = tf.pad(sat, [[0, 0], [1, 0], [1, 0], [0, 0]])
    sat = tf.reshape(sat, [-1, depth])

    h1 = tf.cast(height + 1, tf.int64)
    w1 = tf.cast(width + 1, tf.int64)
    b64 = tf.cast(batch, tf.int64)
    pos = tf.reshape(tf.range(bins, dtype=tf.int64), [ph, pw])
    n = tf.range(tf.shape(rois, out_type=tf.int64)[0], dtype=tf.int64)[:, None, None, None]
    base = (pos * b64 + n) * h1  # [B, 1, ph, pw] -> broadcasts over R

    def corner(ys, xs):
        y = tf.cast(ys, tf.int64)[..., :, None]
        x = tf.cast(xs, tf.int64)[..., None, :]
        return (base + y) * w1 + x  # [B, R, ph, pw]

    index = tf.stack([corner(y_hi, x_hi), corner(y_lo, x_hi), corner(y_hi, x_lo), corner(y_lo, x_lo)], axis=-1)
    rows = tf.gather(sat, index)  # [B, R, ph, pw, 4, D]
    total = rows[..., 0, :] - rows[..., 1, :] - rows[..., 2, :] + rows[..., 3, :]
    area = tf.cast((y_hi - y_lo)[..., :, None] * (x_hi - x_lo)[..., None, :], tf.float64)
    nonempty = area > 0.0
    mean = total / tf.where(nonempty, area, 1.0)[..., None]
    mean = tf.where(nonempty[..., None], mean, tf.zeros_like(mean))
    out = tf.cast(mean, features.dtype)
    if channels is not None:
        out = tf.ensure_shape(out, [None, None, ph, pw, channels // bins])
    return out
