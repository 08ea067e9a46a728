"""Slow numpy references for box arithmetic, written from DESIGN.md §4 (one box pair at a time)."""

import math

import numpy as np


def _finite(box):
    return all(math.isfinite(float(v)) for v in box)


def area(box):
    """0 for inverted, degenerate and non-finite boxes (a NaN or inf coordinate: no box)."""
    if not _finite(box):
        return 0.0
    x1, y1, x2, y2 = (float(v) for v in box)
    return max(x2 - x1, 0.0) * max(y2 - y1, 0.0)


def iou_pair(a, b):
    if not (_finite(a) and _finite(b)):
        return 0.0
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def giou_pair(a, b):
    if not (_finite(a) and _finite(b)):
        return -1.0  # kerasdet's rule for no box: the lowest GIoU
    value = iou_pair(a, b)
    union = area(a) + area(b) - max(min(a[2], b[2]) - max(a[0], b[0]), 0.0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    cw = max(max(a[2], b[2]) - min(a[0], b[0]), 0.0)
    ch = max(max(a[3], b[3]) - min(a[1], b[1]), 0.0)
    enclosing = cw * ch
    return value - (enclosing - union) / enclosing if enclosing > 0 else 0.0


def pairwise(fn, boxes1, boxes2):
    out = np.zeros((len(boxes1), len(boxes2)))
    for i, a in enumerate(boxes1):
        for j, b in enumerate(boxes2):
            out[i, j] = fn(a, b)
    return out


def delta_encode(ref, box, weights):
    pw, ph = ref[2] - ref[0], ref[3] - ref[1]
    px, py = ref[0] + pw / 2, ref[1] + ph / 2
    gw, gh = box[2] - box[0], box[3] - box[1]
    gx, gy = box[0] + gw / 2, box[1] + gh / 2
    wx, wy, ww, wh = weights
    return [wx * (gx - px) / pw, wy * (gy - py) / ph, ww * math.log(gw / pw), wh * math.log(gh / ph)]


def delta_decode(ref, delta, weights, clamp):
    pw, ph = ref[2] - ref[0], ref[3] - ref[1]
    px, py = ref[0] + pw / 2, ref[1] + ph / 2
    wx, wy, ww, wh = weights
    dx, dy = delta[0] / wx, delta[1] / wy
    dw, dh = min(delta[2] / ww, clamp), min(delta[3] / wh, clamp)
    cx, cy = px + dx * pw, py + dy * ph
    w, h = pw * math.exp(dw), ph * math.exp(dh)
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
