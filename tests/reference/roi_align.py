"""Slow numpy references for RoIAlign, position-sensitive RoIAlign and FPN level assignment.

Written from DESIGN.md §4 (torchvision / Detectron2 semantics), with plain loops: they are the spec.
The roi geometry (scaled corners, sizes, bin sizes, sample positions and the adaptive grid) is computed
in float32 in the same order as torchvision's CPU kernel, so that `ceil(roi_size / output_size)` and the
range tests decide exactly as a float32 implementation does; the interpolation itself is accumulated in
float64.
"""

from __future__ import annotations

import math

import numpy as np

from tests.reference.roi_pool import _is_padding, _pair

f32 = np.float32
MAX_ADAPTIVE_GRID = 64  # DESIGN.md §4 has no cap; kerasdet bounds adaptive sampling (docs/decisions.md)


def bilinear(fmap: np.ndarray, y, x) -> np.ndarray:
    """Value of `fmap [H, W, C]` at continuous `(y, x)` with torchvision's boundary rules.

    A point with `y < -1`, `y > H`, `x < -1` or `x > W` gives 0; coordinates in `[-1, 0]` read index 0;
    coordinates at or beyond `size - 1` (up to `size`) read index `size - 1`.
    """
    height, width = fmap.shape[:2]
    y = float(y)
    x = float(x)
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(fmap.shape[2], np.float64)
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low = int(y)
    x_low = int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    f = fmap.astype(np.float64)
    top = hy * hx * f[y_low, x_low] + hy * lx * f[y_low, x_high]
    return top + ly * hx * f[y_high, x_low] + ly * lx * f[y_high, x_high]


def _align_one(fmap, roi, ph, pw, spatial_scale, sampling_ratio, aligned):
    """RoIAlign of one roi on one map `[H, W, C]` -> `[ph, pw, C]` float64."""
    out = np.zeros((ph, pw, fmap.shape[2]), np.float64)
    if _is_padding(roi):
        return out
    scale = f32(spatial_scale)
    offset = f32(0.5) if aligned else f32(0.0)
    x1, y1, x2, y2 = (f32(v) for v in roi)
    start_w = f32(x1 * scale - offset)
    start_h = f32(y1 * scale - offset)
    end_w = f32(x2 * scale - offset)
    end_h = f32(y2 * scale - offset)
    roi_w = f32(end_w - start_w)
    roi_h = f32(end_h - start_h)
    if not aligned:
        roi_w = max(roi_w, f32(1.0))
        roi_h = max(roi_h, f32(1.0))
    bin_h = f32(roi_h / f32(ph))
    bin_w = f32(roi_w / f32(pw))
    # adaptive: ceil(bin) points per side, at most MAX_ADAPTIVE_GRID (kerasdet's cap; torchvision has none)
    grid_h = sampling_ratio if sampling_ratio > 0 else min(int(math.ceil(bin_h)), MAX_ADAPTIVE_GRID)
    grid_w = sampling_ratio if sampling_ratio > 0 else min(int(math.ceil(bin_w)), MAX_ADAPTIVE_GRID)
    if grid_h <= 0 or grid_w <= 0:
        return out
    count = grid_h * grid_w
    for i in range(ph):
        for j in range(pw):
            acc = np.zeros(fmap.shape[2], np.float64)
            for iy in range(grid_h):
                y = f32(start_h + f32(f32(i) * bin_h)) + f32(f32(f32(iy + 0.5) * bin_h) / f32(grid_h))
                for ix in range(grid_w):
                    x = f32(start_w + f32(f32(j) * bin_w)) + f32(f32(f32(ix + 0.5) * bin_w) / f32(grid_w))
                    acc += bilinear(fmap, y, x)
            out[i, j] = acc / count
    return out


def roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True) -> np.ndarray:
    """RoIAlign (He et al., 2017) of `features [B, H, W, C]` over `rois [B, R, 4]` -> `[B, R, ph, pw, C]`.

    Rows of `rois` that are all -1 give zeros. `sampling_ratio <= 0` takes `ceil(roi_size / output_size)`
    points per bin side (a grid of 0 points gives 0).
    """
    features = np.asarray(features)
    rois = np.asarray(rois, np.float32)
    ph, pw = _pair(output_size)
    b, r = rois.shape[:2]
    out = np.zeros((b, r, ph, pw, features.shape[-1]), np.float64)
    for bi in range(b):
        for ri in range(r):
            out[bi, ri] = _align_one(features[bi], rois[bi, ri], ph, pw, spatial_scale, sampling_ratio, aligned)
    return out.astype(np.float32)


def ps_roi_align(features, rois, output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True) -> np.ndarray:
    """Position-sensitive RoIAlign (R-FCN sampling with RoIAlign bins) -> `[B, R, ph, pw, D]`.

    `features` has `C = D * ph * pw` channels; output bin `(i, j)` of channel `d` is the RoIAlign bin
    `(i, j)` of input channel `d * ph * pw + i * pw + j`.
    """
    features = np.asarray(features)
    ph, pw = _pair(output_size)
    full = roi_align(features, rois, (ph, pw), spatial_scale, sampling_ratio, aligned)
    depth = features.shape[-1] // (ph * pw)
    b, r = full.shape[:2]
    out = np.zeros((b, r, ph, pw, depth), np.float32)
    for i in range(ph):
        for j in range(pw):
            for d in range(depth):
                out[:, :, i, j, d] = full[:, :, i, j, d * ph * pw + i * pw + j]
    return out


def assign_fpn_levels(rois, min_level, max_level, canonical_scale=224.0, canonical_level=4) -> np.ndarray:
    """FPN level `floor(canonical_level + log2(sqrt(w * h) / canonical_scale) + 1e-6)` clamped to the levels."""
    rois = np.asarray(rois, np.float64)
    levels = np.zeros(rois.shape[:-1], np.int64)
    for idx in np.ndindex(*rois.shape[:-1]):
        x1, y1, x2, y2 = rois[idx]
        size = math.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
        if size <= 0:
            level = min_level
        else:
            level = math.floor(canonical_level + math.log2(size / canonical_scale) + 1e-6)
        levels[idx] = min(max(level, min_level), max_level)
    return levels


def multilevel_roi_align(features, strides, rois, output_size, sampling_ratio=2, aligned=True,
                         canonical_scale=224.0, canonical_level=4) -> np.ndarray:
    """Each roi pooled by `roi_align` from the map of its FPN level (`strides` are powers of two)."""
    rois = np.asarray(rois, np.float32)
    level_of = {int(round(math.log2(s))): k for k, s in enumerate(strides)}
    levels = assign_fpn_levels(rois, min(level_of), max(level_of), canonical_scale, canonical_level)
    ph, pw = _pair(output_size)
    b, r = rois.shape[:2]
    out = np.zeros((b, r, ph, pw, np.asarray(features[0]).shape[-1]), np.float32)
    for bi in range(b):
        for ri in range(r):
            k = level_of[int(levels[bi, ri])]
            fmap = np.asarray(features[k])[bi]
            out[bi, ri] = _align_one(fmap, rois[bi, ri], ph, pw, 1.0 / strides[k], sampling_ratio, aligned)
    return out
