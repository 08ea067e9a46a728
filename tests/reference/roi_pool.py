"""Slow numpy references for quantised RoI pooling: RoI max pooling, PS-RoI pooling and SPP.

Written from DESIGN.md §4 with plain loops: they are the spec.

- `roi_pool` (Fast R-CNN, Girshick 2015): corners scaled by `spatial_scale` and rounded half away from
  zero; roi size `max(end - start + 1, 1)`; bin `i` covers `[floor(i * bin) + start, ceil((i + 1) * bin) + start)`
  clipped to the map; the max over the bin, 0 for an empty bin.
- `ps_roi_pool` (R-FCN, Dai et al. 2016, torchvision semantics): roi size `max(end - start, 1)`, the same
  bins; output bin `(i, j)` of channel `d` averages input channel `d * ph * pw + i * pw + j`.
- `spatial_pyramid_pool` (SPP-net, He et al. 2014): `roi_pool` bins for each pyramid level, each level
  flattened in (row, column, channel) order, the levels concatenated in the order given.

The roi geometry (scaled corners, bin sizes, bin products) is computed in float32 as a float32 kernel
(Caffe's, torchvision's) does, so floors and ceilings decide exactly as they would; sums are float64.
Rows of `rois` that are all -1 are padding and give zeros.
"""

from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def _pair(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    return int(output_size[0]), int(output_size[1])


def round_half_away(value) -> int:
    """Rounds a float half away from zero (C's `round`), e.g. 2.5 -> 3, -2.5 -> -3."""
    v = float(value)
    r = math.floor(abs(v) + 0.5)
    return int(r if v >= 0 else -r)


def _is_padding(roi) -> bool:
    return bool(np.all(np.asarray(roi) == -1))


def bins_1d(start: int, end: int, count: int, limit: int, plus_one: bool):
    """The `count` integer bin ranges `[lo, hi)` of one roi side, clipped to `[0, limit]`."""
    size = max(end - start + 1, 1) if plus_one else max(end - start, 1)
    bin_size = f32(f32(size) / f32(count))
    out = []
    for i in range(count):
        lo = int(math.floor(f32(f32(i) * bin_size))) + start
        hi = int(math.ceil(f32(f32(i + 1) * bin_size))) + start
        out.append((min(max(lo, 0), limit), min(max(hi, 0), limit)))
    return out


def _scaled_corners(roi, spatial_scale):
    scale = f32(spatial_scale)
    x1, y1, x2, y2 = (round_half_away(f32(f32(v) * scale)) for v in roi)
    return x1, y1, x2, y2


def _bins(roi, ph, pw, height, width, spatial_scale, plus_one):
    """Yields `(i, j, hs, he, ws, we)` for each non-empty bin of one roi on a `height x width` map.

    Bin `(i, j)` covers rows `[hs, he)` and columns `[ws, we)`; a padding row (all -1) yields nothing.
    """
    if _is_padding(roi):
        return
    x1, y1, x2, y2 = _scaled_corners(roi, spatial_scale)
    rows = bins_1d(y1, y2, ph, height, plus_one)
    cols = bins_1d(x1, x2, pw, width, plus_one)
    for i, (hs, he) in enumerate(rows):
        for j, (ws, we) in enumerate(cols):
            if he > hs and we > ws:
                yield i, j, hs, he, ws, we


def _pool_one(fmap, roi, ph, pw, spatial_scale):
    """RoI max pooling of one roi over one map `[H, W, C]` -> `[ph, pw, C]`."""
    height, width, channels = fmap.shape
    out = np.zeros((ph, pw, channels), fmap.dtype)
    for i, j, hs, he, ws, we in _bins(roi, ph, pw, height, width, spatial_scale, plus_one=True):
        best = np.full(channels, -np.inf, fmap.dtype)
        for y in range(hs, he):
            for x in range(ws, we):
                best = np.maximum(best, fmap[y, x])
        out[i, j] = best
    return out


def roi_pool(features, rois, output_size, spatial_scale=1.0) -> np.ndarray:
    """Fast R-CNN RoI max pooling of `features [B, H, W, C]` over `rois [B, R, 4]` -> `[B, R, ph, pw, C]`."""
    features = np.asarray(features)
    rois = np.asarray(rois, np.float32)
    ph, pw = _pair(output_size)
    b, r = rois.shape[:2]
    out = np.zeros((b, r, ph, pw, features.shape[-1]), features.dtype)
    for bi in range(b):
        for ri in range(r):
            out[bi, ri] = _pool_one(features[bi], rois[bi, ri], ph, pw, spatial_scale)
    return out


def roi_pool_argmax(features, rois, output_size, spatial_scale=1.0) -> np.ndarray:
    """For each output element of `roi_pool`, the flat index `(y * W + x)` of its argmax in its map, -1 if empty.

    The gradient of `roi_pool` w.r.t. `features` sends each output's upstream gradient to this element.
    Ties are resolved by the first element in row-major order (the tests use inputs without ties).
    """
    features = np.asarray(features)
    rois = np.asarray(rois, np.float32)
    ph, pw = _pair(output_size)
    b, r = rois.shape[:2]
    height, width, channels = features.shape[1:]
    out = np.full((b, r, ph, pw, channels), -1, np.int64)
    for bi in range(b):
        for ri in range(r):
            for i, j, hs, he, ws, we in _bins(rois[bi, ri], ph, pw, height, width, spatial_scale, plus_one=True):
                for c in range(channels):
                    patch = features[bi, hs:he, ws:we, c]
                    k = int(np.argmax(patch))
                    y, x = divmod(k, we - ws)
                    out[bi, ri, i, j, c] = (y + hs) * width + (x + ws)
    return out


def roi_pool_grad(features, rois, output_size, upstream, spatial_scale=1.0) -> np.ndarray:
    """The gradient of `sum(roi_pool(...) * upstream)` w.r.t. `features`: upstream routed to the argmax."""
    features = np.asarray(features)
    upstream = np.asarray(upstream, np.float64)
    arg = roi_pool_argmax(features, rois, output_size, spatial_scale)
    b, height, width, channels = features.shape
    grad = np.zeros((b, height * width, channels), np.float64)
    for idx in np.ndindex(*arg.shape):
        k = arg[idx]
        if k >= 0:
            grad[idx[0], k, idx[-1]] += upstream[idx]
    return grad.reshape(features.shape)


def ps_roi_pool(features, rois, output_size, spatial_scale=1.0) -> np.ndarray:
    """R-FCN position-sensitive RoI pooling: `features [B, H, W, D * ph * pw]` -> `[B, R, ph, pw, D]`."""
    features = np.asarray(features)
    rois = np.asarray(rois, np.float32)
    ph, pw = _pair(output_size)
    b, r = rois.shape[:2]
    height, width, channels = features.shape[1:]
    depth = channels // (ph * pw)
    out = np.zeros((b, r, ph, pw, depth), np.float64)
    for bi in range(b):
        for ri in range(r):
            for i, j, hs, he, ws, we in _bins(rois[bi, ri], ph, pw, height, width, spatial_scale, plus_one=False):
                area = (he - hs) * (we - ws)
                for d in range(depth):
                    c = d * ph * pw + i * pw + j
                    total = 0.0
                    for y in range(hs, he):
                        for x in range(ws, we):
                            total += float(features[bi, y, x, c])
                    out[bi, ri, i, j, d] = total / area
    return out.astype(features.dtype)


def spatial_pyramid_pool(features, rois, levels=(1, 2, 4), spatial_scale=1.0) -> np.ndarray:
    """SPP-net pooling: for each level `l`, `roi_pool` with `l x l` bins flattened to `l * l * C`
    (row, column, channel order), the levels concatenated in the order given -> `[B, R, sum(l * l) * C]`."""
    features = np.asarray(features)
    b, r = np.asarray(rois).shape[:2]
    parts = [roi_pool(features, rois, (lv, lv), spatial_scale).reshape(b, r, -1) for lv in levels]
    return np.concatenate(parts, axis=-1)
