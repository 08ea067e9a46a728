"""Slow numpy references for Mask R-CNN's keypoint heatmaps (He et al., 2017, §5): targets and decoding.

Written from the definitions in kerasdet/ops/keypoints.py with plain loops: they are the spec.

- `keypoint_heatmap_targets`: `col = min(floor((x - x1) * S / (x2 - x1)), S - 1)`, `row` likewise, index
  `row * S + col`; valid when visibility > 0, the roi has positive width and height, the keypoint is in
  the closed roi and every value is finite (and the bin position is a number); otherwise index 0. The bin
  position is computed in float32 in that order of operations, so that the floor decides exactly as a
  float32 implementation does.
- `heatmaps_to_keypoints`: argmax bin (lowest flat index on ties), parabola vertex offset per axis,
  `x = x1 + (c + 0.5 + dx) * (x2 - x1) / S`, score the spatial-softmax probability of the argmax bin;
  padding rois give zeros, a map holding NaN or +inf (or only -inf) gives NaN. The offsets are computed
  in float32 (the `a + b < 0` test is exact), the softmax in float64.
"""

from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def _is_padding(roi) -> bool:
    return bool(np.all(np.asarray(roi) == -1))


def _bin(value, start, extent, size):
    """(bin, is a number) of one coordinate along one roi side, in float32 as the op computes it."""
    with np.errstate(all="ignore"):
        position = f32(f32(f32(value - start) * f32(size)) / extent)
    if math.isnan(position):
        return 0, False
    return int(math.floor(min(max(float(position), 0.0), size - 1.0))), True


def keypoint_heatmap_targets(keypoints, rois, heatmap_size):
    """`keypoints [B, R, K, 3]`, `rois [B, R, 4]` -> (int32 indices `[B, R, K]`, bool valid `[B, R, K]`)."""
    keypoints = np.asarray(keypoints, np.float32)
    rois = np.asarray(rois, np.float32)
    size = int(heatmap_size)
    b, r, k = keypoints.shape[:3]
    indices = np.zeros((b, r, k), np.int32)
    valid = np.zeros((b, r, k), bool)
    for bi in range(b):
        for ri in range(r):
            x1, y1, x2, y2 = rois[bi, ri]
            with np.errstate(all="ignore"):
                width = f32(x2 - x1)
                height = f32(y2 - y1)
            roi_finite = all(math.isfinite(v) for v in rois[bi, ri])
            for ki in range(k):
                x, y, v = keypoints[bi, ri, ki]
                if not (roi_finite and math.isfinite(x) and math.isfinite(y) and math.isfinite(v)):
                    continue
                if not (v > 0 and width > 0 and height > 0):
                    continue
                if not (x1 <= x <= x2 and y1 <= y <= y2):
                    continue
                col, col_ok = _bin(x, x1, width, size)
                row, row_ok = _bin(y, y1, height, size)
                if not (col_ok and row_ok):
                    continue
                indices[bi, ri, ki] = row * size + col
                valid[bi, ri, ki] = True
    return indices, valid


def _offset(before, centre, after) -> float:
    """Parabola vertex through (-1, before), (0, centre), (1, after), in float32; 0 unless a true maximum."""
    with np.errstate(all="ignore"):
        a = f32(f32(before) - f32(centre))
        b = f32(f32(after) - f32(centre))
        if not (math.isfinite(a) and math.isfinite(b)):
            return 0.0
        den = f32(a + b)
        if not den < 0:
            return 0.0
        offset = f32(f32(a - b) / f32(f32(2.0) * den))
    return float(min(max(offset, -0.5), 0.5))


def _decode_map(logits, roi):
    """`logits [S, S]` float32 and one roi -> (x, y, score)."""
    size = logits.shape[0]
    values = [float(v) for v in logits.ravel()]
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan, math.nan
    best = 0
    for i, v in enumerate(values):  # strict '>' keeps the lowest index on ties
        if v > values[best]:
            best = i
    top = values[best]
    if not math.isfinite(top):
        return math.nan, math.nan, math.nan
    r, c = divmod(best, size)
    dx = _offset(logits[r, c - 1], top, logits[r, c + 1]) if 0 < c < size - 1 else 0.0
    dy = _offset(logits[r - 1, c], top, logits[r + 1, c]) if 0 < r < size - 1 else 0.0
    total = 0.0
    for v in values:
        total += math.exp(v - top)
    x1, y1, x2, y2 = (float(v) for v in roi)
    x = x1 + (c + 0.5 + dx) * (x2 - x1) / size
    y = y1 + (r + 0.5 + dy) * (y2 - y1) / size
    return x, y, 1.0 / total


def heatmaps_to_keypoints(heatmaps, rois) -> np.ndarray:
    """`heatmaps [B, N, S, S, K]` logits and `rois [B, N, 4]` -> float32 `[B, N, K, 3]` (x, y, score)."""
    heatmaps = np.asarray(heatmaps).astype(np.float32)
    rois = np.asarray(rois, np.float32)
    b, n, _, _, k = heatmaps.shape
    out = np.zeros((b, n, k, 3), np.float64)
    for bi in range(b):
        for ni in range(n):
            if _is_padding(rois[bi, ni]):
                continue
            for ki in range(k):
                out[bi, ni, ki] = _decode_map(heatmaps[bi, ni, :, :, ki], rois[bi, ni])
    return out.astype(np.float32)
