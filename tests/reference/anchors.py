"""Slow numpy references for grid anchors, written from DESIGN.md §4 and the papers (plain loops).

Faster R-CNN (Ren et al., 2015): an anchor of size s and aspect ratio r = height / width has area
s**2. SSD (Liu et al., 2016): scale s_k = s_min + (s_max - s_min) (k - 1) / (m - 1), k = 1..m; boxes
w = s_k sqrt(a), h = s_k / sqrt(a) for a in {1, 2, 1/2, (3, 1/3)} plus s'_k = sqrt(s_k s_{k+1}) at
ratio 1; centres ((i + 0.5) / |f_k|, (j + 0.5) / |f_k|) of the image.
"""

import math

import numpy as np


def size_ratio_shapes(sizes, ratios):
    """(w, h) in pixels for each size then each ratio (sizes-major)."""
    out = []
    for s in sizes:
        for r in ratios:
            w = math.sqrt(s * s / r)
            out.append((w, w * r))
    return out


def ssd_scales(m, s_min=0.2, s_max=0.9, last=1.0):
    scales = [s_min + (s_max - s_min) * (k - 1) / (m - 1) for k in range(1, m + 1)]
    return scales + [last]


def ssd_shapes(ratios_per_map, s_min=0.2, s_max=0.9, last=1.0):
    """Relative (w, h) per map: [1:1 s_k, 1:1 s'_k, then a and 1/a for each listed a]."""
    m = len(ratios_per_map)
    scales = ssd_scales(m, s_min, s_max, last)
    maps = []
    for k in range(m):
        s = scales[k]
        boxes = [(s, s), (math.sqrt(s * scales[k + 1]),) * 2]
        for a in ratios_per_map[k]:
            boxes.append((s * math.sqrt(a), s / math.sqrt(a)))
            boxes.append((s * math.sqrt(1 / a), s / math.sqrt(1 / a)))
        maps.append(boxes)
    return maps


def grid_anchors(image_hw, feature_hw, stride, offset, shapes):
    """Anchors [H*W*A, 4] xyxy: rows (y), then columns (x), then shapes; `stride` None = image / map.

    `shapes` are (w, h) in pixels.
    """
    img_h, img_w = image_hw
    fh, fw = feature_hw
    if stride is None:
        sy, sx = img_h / fh, img_w / fw
    else:
        sy = sx = stride
    out = []
    for y in range(fh):
        for x in range(fw):
            cx = (x + offset) * sx
            cy = (y + offset) * sy
            for w, h in shapes:
                out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return np.asarray(out, np.float64).reshape(-1, 4)
