"""RoIAlign, position-sensitive RoIAlign and multi-level (FPN) RoIAlign, exact and fast.

Semantics are torchvision's / Detectron2's (DESIGN.md §4), from Mask R-CNN (He et al., 2017,
"Mask R-CNN", https://arxiv.org/abs/1703.06870), R-FCN (Dai et al., 2016, https://arxiv.org/abs/1605.06409)
and FPN (Lin et al., 2017, https://arxiv.org/abs/1612.03144):

- roi corners are scaled by `spatial_scale`; `aligned=True` then shifts them by -0.5 (pixel centres),
  `aligned=False` forces the roi width and height to at least 1;
- each of the `ph x pw` bins takes a `grid_h x grid_w` grid of points at `(iy + 0.5) * bin / grid`, with
  `grid = sampling_ratio` when it is positive and `ceil(roi_size / output_size)` per roi otherwise, at most
  `MAX_ADAPTIVE_GRID` (64) per side: torchvision has no cap, so a roi wider than 64 bins' worth of feature cells
  per bin (448 cells at 7x7) is sampled less densely than there, and one roi's grid stays at most 448 x 448
  points per channel at 7x7 (a 1e5-pixel roi would otherwise ask for 1e5 x 1e5);
- a point is read by bilinear interpolation that gives 0 for `y < -1` or `y > H` (x likewise), reads
  row 0 for `y` in `[-1, 0]` and row `H - 1` for `y` in `[H - 1, H]`;
- a bin is the mean of its points (0 when its grid is empty); rows of `rois` that are all -1 give 0.

How it is computed (exactly, not approximately): the sample points of a roi along one axis are evenly
spaced, so `tf.image.crop_and_resize` with suitably normalised boxes samples exactly those points. Padding
the map by one edge-replicated pixel on every side reproduces the clamping in `[-1, 0]` and `[H - 1, H]`.
With a positive `sampling_ratio` one call samples the whole `(ph * s) x (pw * s)` grid of a roi and an
`s x s` average pool makes the bins. crop_and_resize reads 0 beyond the padded map, which is exactly the
range `[-1, H]`, so rois with no sample near -1 or H (inside the map or crossing its border: the usual
case) need nothing more. For the others the range test must decide exactly as the reference does, also for
a point exactly on -1 or H, which crop_and_resize's own rounding could not promise: they are sampled again
from a map padded by two replicated pixels and their samples beyond `[-1, H]` are zeroed by masks computed
here. With adaptive sampling the rois are grouped by their grid `(grid_h, grid_w)` and each group is sampled
as above with that grid. Position-sensitive RoIAlign turns each `(roi, bin)` pair into a box over the bin
on the channel group of that bin, so it reads only the channels it returns. Gradients flow to `features` through `crop_and_resize`, the padding
and the pool.

`tf.image.crop_and_resize` has no XLA kernel: these functions do not run under
`tf.function(jit_compile=True)`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from kerasdet.ops._checks import (
    as_float_tensor,
    check_bool,
    check_int,
    check_last_dim,
    check_rank,
    output_size_pair,
    positive_scale,
    rois_tensor,
)
from kerasdet.ops.boxes import area, padding_rows

__all__ = ["roi_align", "ps_roi_align", "multilevel_roi_align", "assign_fpn_levels"]

# most sample points per bin side with adaptive sampling (`sampling_ratio <= 0`); see the module docstring
MAX_ADAPTIVE_GRID = 64


# --------------------------------------------------------------------------------------------------
# argument checks


def _check_sampling(sampling_ratio, aligned):
    """Checks RoIAlign's sampling options: an int `sampling_ratio` and a bool `aligned`."""
    check_int(sampling_ratio, "sampling_ratio", " (<= 0 for adaptive)")
    check_bool(aligned, "aligned")


def _features(value, name="features"):
    """Returns (float32 features, output dtype)."""
    dtype = getattr(value, "dtype", None)
    out_dtype = tf.as_dtype(dtype) if dtype is not None else tf.float32
    if not out_dtype.is_floating:
        out_dtype = tf.float32
    t = as_float_tensor(value, name)
    check_rank(t, name, 4, "[B, H, W, C] (channels last)")
    if t.shape.rank == 4 and (t.shape[1] == 0 or t.shape[2] == 0):
        raise ValueError(f"`{name}` must have a non-empty spatial size; got shape {tuple(t.shape)}")
    return t, out_dtype


# --------------------------------------------------------------------------------------------------
# core: evenly spaced samples through crop_and_resize

# crop_and_resize recomputes each sample's position in float32 from the normalised box (a handful of roundings,
# each within half an ulp of the largest magnitude involved). A box whose samples all stay more than
# _MARGIN_ULPS ulps of that magnitude (the box's extreme samples and the map's size) away from -1 and from size
# cannot have a sample that the kernel puts on the other side of the range test; boxes with a sample closer take
# the masked path, where the range test is made here, in the order of operations of the reference. (A fixed
# margin would be needlessly wide for a 64-cell map and too narrow for a roi that starts 1e5 cells away.)
_MARGIN_ULPS = 64.0
_FLOAT32_EPS = 2.0 ** -23


def _pad_replicate(features, pad):
    """Pads `[B, H, W, C]` by `pad` replicated pixels on each spatial side (two gathers of clamped indices: a
    third of the time of `pad` SYMMETRIC pads; gradients of a replicated pixel add up on its edge pixel)."""
    shape = tf.shape(features)
    rows = tf.clip_by_value(tf.range(-pad, shape[1] + pad), 0, shape[1] - 1)
    cols = tf.clip_by_value(tf.range(-pad, shape[2] + pad), 0, shape[2] - 1)
    return tf.gather(tf.gather(features, rows, axis=1), cols, axis=2)


def _sample_grid(padded, pad, box_indices, y0, dy, ny, x0, dx, nx, valid):
    """Samples `padded` (padded by `pad`) at `y0 + k * dy` (k < ny) by `x0 + l * dx` (l < nx) per box.

    `y0`, `x0`, `dy`, `dx` are `[N]` float32 in the coordinates of the unpadded map. Samples beyond the
    padded map read 0, and boxes with `valid` False read 0 everywhere. Returns `[N, ny, nx, C]` float32.
    """
    shape = tf.shape(padded)
    span_y = tf.cast(shape[1] - 1, tf.float32)
    span_x = tf.cast(shape[2] - 1, tf.float32)
    # crop_and_resize reads y1n * span + k * (y2n - y1n) * span / (ny - 1) and 0 outside [0, span]
    first_y = y0 + float(pad)
    first_x = x0 + float(pad)
    last_y = first_y + dy * _float(ny - 1)
    last_x = first_x + dx * _float(nx - 1)
    boxes = tf.stack([first_y / span_y, first_x / span_x, last_y / span_y, last_x / span_x], axis=-1)
    # invalid boxes (padding rows, empty grids, non-finite geometry) sample far outside: exact zeros
    valid = tf.logical_and(valid, tf.reduce_all(tf.math.is_finite(boxes), axis=-1))
    boxes = tf.where(valid[:, None], boxes, -1.0)
    if isinstance(ny, int) and isinstance(nx, int):
        crop_size = [ny, nx]
    else:
        crop_size = tf.stack([tf.cast(ny, tf.int32), tf.cast(nx, tf.int32)])
    return tf.image.crop_and_resize(padded, boxes, box_indices, crop_size, extrapolation_value=0.0)


def _keep(start, bin_size, bins, grid, offsets, size):
    """Whether each sample lies in `[-1, size]`, computed as the reference does -> bool `[N, bins * G]`.

    Sample `(p, o)` is at `(start + p * bin) + (offsets[o] + 0.5) * bin / grid`, bins major.
    """
    p = tf.range(bins, dtype=tf.float32)
    base = start[:, None] + p[None, :] * bin_size[:, None]
    off = (offsets[None, :] + 0.5) * bin_size[:, None] / grid[:, None]
    pos = base[:, :, None] + off[:, None, :]
    keep = tf.logical_and(pos >= -1.0, pos <= size)
    return tf.reshape(keep, tf.stack([tf.shape(start)[0], -1]))


def _map_size(features):
    shape = tf.shape(features)
    return tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)


def _float(v):
    """A Python int as a float constant, an int tensor cast to float32."""
    return float(v) if isinstance(v, int) else tf.cast(v, tf.float32)


def _grid_samples(padded, pad, box_indices, geometry, ph, pw, sh, sw, valid):
    """Crops the `(ph * sh) x (pw * sw)` sample grid of every box -> `[N, ph * sh, pw * sw, C]`."""
    start_y, start_x, height, width, _ = geometry
    step_y = height / float(ph) / _float(sh)
    step_x = width / float(pw) / _float(sw)
    first_y = start_y + 0.5 * step_y
    first_x = start_x + 0.5 * step_x
    return _sample_grid(padded, pad, box_indices, first_y, step_y, ph * sh, first_x, step_x, pw * sw, valid)


def _pool(crops, ph, pw, sh, sw):
    """Means over `sh x sw` blocks: `[N, ph * sh, pw * sw, C]` -> `[N, ph, pw, C]`."""
    if isinstance(sh, int) and isinstance(sw, int):
        if sh == sw == 1:
            return crops
        return tf.nn.avg_pool2d(crops, ksize=[sh, sw], strides=[sh, sw], padding="VALID")
    shape = tf.shape(crops)
    n, channels = shape[0], shape[3]
    rows = tf.reduce_mean(tf.reshape(crops, tf.stack([n * ph, sh, -1])), axis=1)
    bins = tf.reduce_mean(tf.reshape(rows, tf.stack([n * ph * pw, sw, channels])), axis=1)
    return tf.reshape(bins, tf.stack([n, ph, pw, channels]))


def _clear_of_range_ends(geometry, ph, pw, sh, sw, size_y, size_x):
    """Boxes none of whose samples lies within the rounding margin (`_MARGIN_ULPS`) of -1 or of `size` on either
    axis.

    For them crop_and_resize's own range test, on the map padded by one replicated pixel (which covers exactly
    `[-1, size]`), decides every sample as the reference does: samples inside read the clamped bilinear value,
    samples beyond read its extrapolation value 0. That holds for boxes crossing the border too; only boxes with
    a sample (nearly) on -1 or `size` need the explicit masks. Samples are evenly spaced, so the one nearest to
    each end is found by rounding.
    """
    start_y, start_x, height, width, _ = geometry

    def axis_ok(start, extent, count, size):
        count = _float(count)
        step = extent / count
        first = start + 0.5 * step
        last = first + (count - 1.0) * step
        magnitude = tf.maximum(tf.maximum(tf.abs(first), tf.abs(last)), size + 2.0)
        margin = _MARGIN_ULPS * _FLOAT32_EPS * magnitude

        def clear_of(end):
            nearest = tf.clip_by_value(tf.round((end - first) / step), 0.0, count - 1.0)
            return tf.abs(first + nearest * step - end) > margin

        return tf.logical_and(clear_of(-1.0), clear_of(size))

    return tf.logical_and(axis_ok(start_y, height, ph * sh, size_y), axis_ok(start_x, width, pw * sw, size_x))


def _align_grid(features, padded1, padded2_fn, box_indices, geometry, ph, pw, sh, sw):
    """RoIAlign with `sh x sw` points per bin (Python ints or int32 scalars) -> `[N, ph, pw, C]`.

    One crop of `(ph * sh) x (pw * sw)` points per box, then an `sh x sw` mean. Boxes with no sample near -1 or
    the map's size (inside the map or crossing its border) are read from `padded1` (one replicated pixel per side,
    which reproduces the clamping in `[-1, 0]` and `[H - 1, H]`; crop_and_resize gives 0 beyond). The others
    are read again from `padded2_fn()` (two replicated pixels), with the range test applied as explicit masks.
    """
    valid = geometry[4]
    size_y, size_x = _map_size(features)
    clear = _clear_of_range_ends(geometry, ph, pw, sh, sw, size_y, size_x)
    near_ends = valid & tf.logical_not(clear)

    def without_masks():
        return _pool(_grid_samples(padded1, 1, box_indices, geometry, ph, pw, sh, sw, valid & clear), ph, pw, sh, sw)

    def with_masks():
        # made here, not shared with the other branch, so that the update below can write into it in place
        fast = without_masks()
        idx = tf.where(near_ends)[:, 0]
        sub = tuple(tf.gather(g, idx) for g in geometry)
        crops = _grid_samples(padded2_fn(), 2, tf.gather(box_indices, idx), sub, ph, pw, sh, sw, sub[4])
        count = tf.shape(idx)
        keep_y = _keep(sub[0], sub[2] / float(ph), ph, tf.fill(count, _float(sh)), tf.range(_float(sh)), size_y)
        keep_x = _keep(sub[1], sub[3] / float(pw), pw, tf.fill(count, _float(sw)), tf.range(_float(sw)), size_x)
        mask = tf.cast(keep_y[:, :, None, None], tf.float32) * tf.cast(keep_x[:, None, :, None], tf.float32)
        return tf.tensor_scatter_nd_update(fast, idx[:, None], _pool(crops * mask, ph, pw, sh, sw))

    return tf.cond(tf.reduce_any(near_ends), with_masks, without_masks)


def _align_fixed(features, box_indices, geometry, ph, pw, s):
    """RoIAlign with `s x s` points per bin for every box."""
    padded1 = _pad_replicate(features, 1)
    return _align_grid(features, padded1, lambda: _pad_replicate(padded1, 1), box_indices, geometry, ph, pw, s, s)


def _align_adaptive(features, box_indices, geometry, ph, pw):
    """RoIAlign with `ceil(roi_size / output_size)` points per bin side, grouped by grid size.

    The boxes sharing a grid `(grid_h, grid_w)` are sampled together as `_align_grid` does for a fixed
    grid; boxes with an empty grid give 0.
    """
    start_y, start_x, height, width, valid = geometry
    grid_h, grid_w = _grid_sizes(height, width, ph, pw)
    valid = valid & (grid_h > 0) & (grid_w > 0)
    grid_h = tf.cast(grid_h, tf.int64)
    grid_w = tf.cast(grid_w, tf.int64)
    stride = tf.reduce_max(tf.concat([tf.where(valid, grid_w, 0), [0]], 0)) + 1
    key = tf.where(valid, grid_h * stride + grid_w, -1)
    keys = tf.unique(tf.boolean_mask(key, valid)).y

    padded1 = _pad_replicate(features, 1)
    padded2 = _pad_replicate(features, 2)
    n = tf.shape(start_y)[0]
    channels = tf.shape(features)[3]
    # slot 0 holds an empty group so that the concatenation below never sees an empty array
    indices = tf.TensorArray(tf.int32, size=1, dynamic_size=True, infer_shape=False)
    outputs = tf.TensorArray(tf.float32, size=1, dynamic_size=True, infer_shape=False)
    indices = indices.write(0, tf.zeros([0], tf.int32))
    outputs = outputs.write(0, tf.zeros(tf.stack([0, ph, pw, channels]), tf.float32))

    def body(i, indices, outputs):
        k = keys[i]
        sh = tf.cast(k // stride, tf.int32)
        sw = tf.cast(k % stride, tf.int32)
        idx = tf.cast(tf.where(tf.equal(key, k))[:, 0], tf.int32)
        sub = tuple(tf.gather(g, idx) for g in geometry)
        out = _align_grid(features, padded1, lambda: padded2, tf.gather(box_indices, idx), sub, ph, pw, sh, sw)
        return i + 1, indices.write(i + 1, idx), outputs.write(i + 1, out)

    _, indices, outputs = tf.while_loop(lambda i, *_: i < tf.size(keys), body, (tf.constant(0), indices, outputs))
    return tf.scatter_nd(indices.concat()[:, None], outputs.concat(), tf.stack([n, ph, pw, channels]))


def _grid_sizes(height, width, ph, pw):
    """Adaptive grid sizes (int32 `[N]`) as torchvision computes them, float32 `ceil(size / bins)`, capped at
    `MAX_ADAPTIVE_GRID` (before the cast, so that huge or non-finite sizes give defined ints)."""
    cap = float(MAX_ADAPTIVE_GRID)

    def grid(size, bins):
        g = tf.math.ceil(size / float(bins))
        return tf.cast(tf.where(tf.math.is_finite(g), tf.clip_by_value(g, -1.0, cap), 0.0), tf.int32)

    return grid(height, ph), grid(width, pw)


def _geometry(boxes, spatial_scale, aligned):
    """Scaled roi start, size and validity `[N]` each, in float32 in torchvision's order of operations."""
    valid = tf.logical_not(padding_rows(boxes))
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = tf.unstack(boxes, 4, axis=-1)
    start_x = x1 * spatial_scale - offset
    start_y = y1 * spatial_scale - offset
    width = (x2 * spatial_scale - offset) - start_x
    height = (y2 * spatial_scale - offset) - start_y
    if not aligned:
        width = tf.maximum(width, 1.0)
        height = tf.maximum(height, 1.0)
    # a roi with a NaN or infinite coordinate reads nothing (torchvision's range test fails for NaN)
    finite = tf.reduce_all(tf.math.is_finite(tf.stack([start_y, start_x, height, width], -1)), -1)
    return start_y, start_x, height, width, tf.logical_and(valid, finite)


def _align(features, box_indices, geometry, ph, pw, sampling_ratio):
    """RoIAlign of the boxes described by `geometry` on float32 `features` -> `[N, ph, pw, C]`."""
    if sampling_ratio > 0:
        return _align_fixed(features, box_indices, geometry, ph, pw, sampling_ratio)
    return _align_adaptive(features, box_indices, geometry, ph, pw)


def _flatten_rois(rois):
    """`[B, R, 4]` -> boxes `[B*R, 4]` and their image indices `[B*R]` int32."""
    shape = tf.shape(rois)
    boxes = tf.reshape(rois, [-1, 4])
    indices = tf.repeat(tf.range(shape[0], dtype=tf.int32), shape[1])
    return boxes, indices


def _roi_align_flat(features, boxes, box_indices, ph, pw, spatial_scale, sampling_ratio, aligned):
    """RoIAlign of `boxes [N, 4]` on images `box_indices [N]` of float32 `features` -> `[N, ph, pw, C]`."""
    geometry = _geometry(boxes, spatial_scale, aligned)
    return _align(features, box_indices, geometry, ph, pw, sampling_ratio)


def _unflatten(pooled, rois, channels):
    shape = tf.shape(rois)
    out_shape = tf.concat([shape[:2], tf.shape(pooled)[1:]], 0)
    out = tf.reshape(pooled, out_shape)
    return tf.ensure_shape(out, rois.shape[:2].concatenate(pooled.shape[1:3]).concatenate([channels]))


def _position_groups(features, ph, pw):
    """`[B, H, W, D * ph * pw]` -> `[ph * pw * B, H, W, D]`: image `(i * pw + j) * B + b` holds bin (i, j)'s group."""
    shape = tf.shape(features)
    batch, depth = shape[0], shape[3] // (ph * pw)
    groups = tf.reshape(features, tf.stack([batch, shape[1], shape[2], depth, ph * pw]))
    groups = tf.transpose(groups, [4, 0, 1, 2, 3])
    return tf.reshape(groups, tf.stack([ph * pw * batch, shape[1], shape[2], depth]))


def _bin_geometry(geometry, ph, pw):
    """The geometry of each roi's `ph x pw` bins as boxes of their own, `[N * ph * pw]` each, bins minor.

    Bin `(i, j)` starts at `start + i * bin` (torchvision's `hstart`) and is one bin tall and wide, so
    RoIAlign of it to a single bin samples exactly the points of bin `(i, j)` of the roi.
    """
    start_y, start_x, height, width, valid = geometry
    bin_h = height / float(ph)
    bin_w = width / float(pw)
    rows = tf.range(ph, dtype=tf.float32)[None, :, None]
    cols = tf.range(pw, dtype=tf.float32)[None, None, :]
    shape = tf.stack([tf.shape(start_y)[0], ph, pw])

    def per_bin(v):
        return tf.reshape(tf.broadcast_to(v, shape), [-1])

    return (
        per_bin(start_y[:, None, None] + rows * bin_h[:, None, None]),
        per_bin(start_x[:, None, None] + cols * bin_w[:, None, None]),
        per_bin(bin_h[:, None, None]),
        per_bin(bin_w[:, None, None]),
        per_bin(valid[:, None, None]),
    )


# --------------------------------------------------------------------------------------------------
# public ops


def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True) -> tf.Tensor:
    """RoIAlign (Mask R-CNN) with torchvision / Detectron2 semantics, channels last.

    Args:
        features: `[B, H, W, C]` float feature maps.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in input-image pixels; rows that are all -1 are padding
            and give zeros.
        output_size: `ph` or `(ph, pw)`, bins per side.
        spatial_scale: feature-map pixels per input pixel (`1 / stride`).
        sampling_ratio: points per bin side; `<= 0` takes `ceil(roi_size / output_size)` per roi, at most
            `MAX_ADAPTIVE_GRID` (64).
        aligned: shift the scaled roi by -0.5 (pixel-centre model, Detectron2's `ROIAlignV2`); with False
            rois smaller than one feature pixel are grown to 1 (the original Mask R-CNN behaviour).

    Returns:
        `[B, R, ph, pw, C]` in the dtype of `features` (computed in float32). Differentiable w.r.t.
        `features`. Not XLA-compilable (`tf.image.crop_and_resize` has no XLA kernel).

    Example:
        >>> x = tf.reshape(tf.range(16.0), [1, 4, 4, 1])
        >>> roi_align(x, [[[0.0, 0.0, 2.0, 2.0]]], 1, sampling_ratio=1).numpy().ravel()
        array([2.5], dtype=float32)
    """
    ph, pw = output_size_pair(output_size)
    scale = positive_scale(spatial_scale)
    _check_sampling(sampling_ratio, aligned)
    feats, out_dtype = _features(features)
    rois = rois_tensor(rois, feats)
    boxes, indices = _flatten_rois(rois)
    pooled = _roi_align_flat(feats, boxes, indices, ph, pw, scale, sampling_ratio, aligned)
    return tf.cast(_unflatten(pooled, rois, feats.shape[-1]), out_dtype)


def ps_roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True) -> tf.Tensor:
    """Position-sensitive RoIAlign (R-FCN score maps pooled with RoIAlign bins), channels last.

    The channels of `features` are `D` groups of `ph * pw`: output bin `(i, j)` of channel `d` is the
    RoIAlign bin `(i, j)` (as `roi_align` computes it) of input channel `d * ph * pw + i * pw + j`.
    With `aligned=True` this is torchvision's `ps_roi_align`, except that a bin whose adaptive grid is
    empty (a zero-size roi with `sampling_ratio <= 0`) gives 0 where torchvision divides by zero.

    Args:
        features: `[B, H, W, D * ph * pw]` float score maps.
        rois: `[B, R, 4]` `xyxy` boxes in input pixels; all -1 rows give zeros.
        output_size: `ph` or `(ph, pw)`.
        spatial_scale, sampling_ratio, aligned: as in `roi_align`.

    Returns:
        `[B, R, ph, pw, D]` in the dtype of `features`. Differentiable w.r.t. `features`; not XLA-compilable.

    Example:
        >>> x = tf.ones([1, 8, 8, 2 * 3 * 3])
        >>> ps_roi_align(x, [[[0.0, 0.0, 6.0, 6.0]]], 3).shape
        TensorShape([1, 1, 3, 3, 2])
    """
    ph, pw = output_size_pair(output_size)
    scale = positive_scale(spatial_scale)
    _check_sampling(sampling_ratio, aligned)
    feats, out_dtype = _features(features)
    channels = feats.shape[-1]
    if channels is not None and channels % (ph * pw) != 0:
        raise ValueError(
            f"`features` must have a multiple of ph * pw = {ph * pw} channels for output_size {(ph, pw)}; "
            f"got shape {tuple(feats.shape)}"
        )
    depth = None if channels is None else channels // (ph * pw)
    rois = rois_tensor(rois, feats)
    boxes, indices = _flatten_rois(rois)

    groups = _position_groups(feats, ph, pw)
    geometry = _bin_geometry(_geometry(boxes, scale, aligned), ph, pw)
    batch = tf.shape(feats)[0]
    bins = tf.range(ph * pw, dtype=tf.int32)[None, :] * batch + indices[:, None]
    pooled = _align(groups, tf.reshape(bins, [-1]), geometry, 1, 1, sampling_ratio)
    pooled = tf.reshape(pooled, tf.stack([tf.shape(boxes)[0], ph, pw, tf.shape(groups)[3]]))
    return tf.cast(_unflatten(pooled, rois, depth), out_dtype)


def _levels_of_strides(strides):
    levels = []
    for s in strides:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0:
            raise ValueError(f"`strides` must be positive powers of two; got {list(strides)!r}")
        level = math.log2(s)
        if level != round(level):
            raise ValueError(f"`strides` must be powers of two; got {list(strides)!r}")
        levels.append(int(round(level)))
    if sorted(levels) != list(range(min(levels), min(levels) + len(levels))):
        raise ValueError(
            f"`strides` must be consecutive FPN levels (distinct powers of two with no gap, e.g. 4, 8, 16, 32); "
            f"got {list(strides)!r}"
        )
    return levels


def _check_canonical(canonical_scale, canonical_level):
    """Checks FPN's level assignment settings: a positive number `canonical_scale`, an int `canonical_level`."""
    if isinstance(canonical_scale, bool) or not isinstance(canonical_scale, (int, float)) or canonical_scale <= 0:
        raise ValueError(f"`canonical_scale` must be a positive number; got {canonical_scale!r}")
    check_int(canonical_level, "canonical_level")


def assign_fpn_levels(rois, min_level, max_level, canonical_scale=224.0, canonical_level=4) -> tf.Tensor:
    """FPN level of each roi (Lin et al., 2017, eq. 1): `floor(k0 + log2(sqrt(w * h) / 224))`, clamped.

    A tolerance of 1e-6 (as torchvision's `LevelMapper`) is added inside the floor so that a box exactly
    at a level's canonical size is not sent one level down by round-off. Zero-area rois go to `min_level`.

    Args:
        rois: `[..., 4]` `xyxy` boxes in input pixels.
        min_level, max_level: the available levels (level `k` has stride `2**k`).
        canonical_scale: the box size mapped to `canonical_level` (224, the ImageNet pre-training size).
        canonical_level: `k0`, 4 in the FPN paper.

    Returns:
        int32 `[...]` levels in `[min_level, max_level]`.

    Example:
        >>> assign_fpn_levels([[0., 0., 224., 224.], [0., 0., 32., 32.]], 2, 5).numpy()
        array([4, 2], dtype=int32)
    """
    for name, v in (("min_level", min_level), ("max_level", max_level)):
        check_int(v, name)
    _check_canonical(canonical_scale, canonical_level)
    if min_level > max_level:
        raise ValueError(f"`min_level` must be <= `max_level`; got {min_level} > {max_level}")
    r = as_float_tensor(rois, "rois")
    check_last_dim(r, "rois", 4, "[..., 4] (x1, y1, x2, y2)")
    size = tf.sqrt(area(r))
    raw = tf.floor(float(canonical_level) + tf.math.log(size / float(canonical_scale)) / math.log(2.0) + 1e-6)
    raw = tf.where(size > 0, raw, float(min_level))
    return tf.cast(tf.clip_by_value(raw, float(min_level), float(max_level)), tf.int32)


def multilevel_roi_align(
    features,
    rois,
    output_size,
    strides,
    sampling_ratio=2,
    aligned=True,
    canonical_scale=224.0,
    canonical_level=4,
) -> tf.Tensor:
    """RoIAlign over an FPN: each roi is pooled from the map of its level (`assign_fpn_levels`).

    Args:
        features: a list of `[B, H_k, W_k, C]` maps, one per entry of `strides` (same `C`).
        rois: `[B, R, 4]` `xyxy` boxes in input pixels; all -1 rows give zeros.
        output_size: `ph` or `(ph, pw)`.
        strides: the maps' strides, consecutive powers of two (e.g. `(4, 8, 16, 32)` for P2-P5);
            the map with stride `2**k` is level `k` and is read with `spatial_scale = 1 / 2**k`.
        sampling_ratio, aligned: as in `roi_align`.
        canonical_scale, canonical_level: as in `assign_fpn_levels`.

    Returns:
        `[B, R, ph, pw, C]` in the rois' order, in the dtype of the first map. Not XLA-compilable.

    Example:
        >>> maps = [tf.ones([1, 32, 32, 4]), tf.ones([1, 16, 16, 4])]
        >>> multilevel_roi_align(maps, [[[0., 0., 64., 64.]]], 7, strides=(4, 8)).shape
        TensorShape([1, 1, 7, 7, 4])
    """
    ph, pw = output_size_pair(output_size)
    _check_sampling(sampling_ratio, aligned)
    if not isinstance(features, (list, tuple)) or not features:
        raise TypeError(f"`features` must be a non-empty list of [B, H, W, C] maps; got {type(features).__name__}")
    if not isinstance(strides, (list, tuple)) or len(strides) != len(features):
        raise ValueError(
            f"`strides` must give one stride per map; got {strides!r} for {len(features)} maps"
        )
    levels = _levels_of_strides(strides)
    maps = []
    out_dtype = None
    for k, f in enumerate(features):
        t, dt = _features(f, f"features[{k}]")
        out_dtype = out_dtype or dt
        maps.append(t)
    channels = {m.shape[-1] for m in maps} - {None}
    if len(channels) > 1:
        raise ValueError(
            f"`features` maps must have the same number of channels; got shapes {[tuple(m.shape) for m in maps]}"
        )
    r = rois_tensor(rois, maps[0])
    boxes, indices = _flatten_rois(r)
    level = assign_fpn_levels(boxes, min(levels), max(levels), canonical_scale, canonical_level)
    slot = level - min(levels)
    order = [levels.index(min(levels) + i) for i in range(len(levels))]  # map index of each slot
    positions = tf.dynamic_partition(tf.range(tf.shape(boxes)[0]), slot, len(levels))
    parts = []
    for i, pos in enumerate(positions):
        k = order[i]
        parts.append(
            _roi_align_flat(
                maps[k],
                tf.gather(boxes, pos),
                tf.gather(indices, pos),
                ph,
                pw,
                1.0 / float(strides[k]),
                sampling_ratio,
                aligned,
            )
        )
    pooled = tf.dynamic_stitch(positions, parts)
    channel = next(iter(channels)) if channels else None
    return tf.cast(_unflatten(pooled, r, channel), out_dtype)
