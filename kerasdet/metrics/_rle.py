"""Run-length encoded (RLE) binary masks in the COCO format, vectorised in numpy.

A COCO RLE describes an `H x W` binary mask read in column-major order (down the first column, then the
next) as alternating run lengths, zeros first: `{"size": [H, W], "counts": "..."}`. `counts` is either a
list of integers ("uncompressed") or the compact string of the COCO API ("compressed": every run length,
from the fourth on taken relative to the run two places before, written 5 bits per character, ASCII 48-111,
bit 0x20 meaning "more characters follow" and bit 0x10 of the last character the sign).

Polygons are rasterised exactly as the COCO API does (Lin et al., "Microsoft COCO: Common Objects in
Context", ECCV 2014, and its reference toolbox): vertices are scaled by 5 and rounded, the boundary is
traced densely, and a pixel is inside when the number of boundary crossings above it in its column is odd.
All functions here work on whole batches of masks at once: masks are handled as sorted lists of
foreground intervals of the column-major flattened image, and every step is a numpy array operation.

Example:
    >>> m = np.zeros((4, 5), np.uint8); m[1:3, 1:4] = 1
    >>> rle = encode(m)
    >>> rle["counts"], int(area(rle))
    ('5220003', 6)
    >>> bool((decode(rle) == m).all())
    True
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

_SCALE = 5.0  # polygon upsampling factor of the COCO API


class Runs(NamedTuple):
    """Foreground intervals `[start, end)` of `n` masks, column-major positions.

    `owner[i]` is the mask of interval i; intervals are sorted by (owner, start), disjoint and not touching.
    `heights` / `widths` are `[n]`.
    """

    starts: np.ndarray
    ends: np.ndarray
    owner: np.ndarray
    heights: np.ndarray
    widths: np.ndarray

    @property
    def n(self) -> int:
        return len(self.heights)


# ----------------------------------------------------------------------------------------------------------
# segment helpers


def _segment_offsets(lengths: np.ndarray) -> np.ndarray:
    """Start index of each segment in a concatenation of segments with `lengths`."""
    out = np.zeros(len(lengths), np.int64)
    if len(lengths) > 1:
        np.cumsum(lengths[:-1], out=out[1:])
    return out


def _local_index(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment id, index within segment) for every element of a concatenation of segments."""
    lengths = np.asarray(lengths, np.int64)
    seg = np.repeat(np.arange(len(lengths)), lengths)
    return seg, np.arange(int(lengths.sum()), dtype=np.int64) - _segment_offsets(lengths)[seg]


def _segmented_cumsum(values: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum restarting at each segment; `values` grouped by (sorted) segment id `seg`."""
    values = np.asarray(values, np.int64)
    if len(values) == 0:
        return values.copy()
    total = np.cumsum(values)
    new = np.r_[True, seg[1:] != seg[:-1]]
    first = np.maximum.accumulate(np.where(new, np.arange(len(values)), 0))
    return total - (total - values)[first]


def empty_runs(heights, widths) -> Runs:
    z = np.zeros(0, np.int64)
    return Runs(z, z.copy(), z.copy(), np.asarray(heights, np.int64), np.asarray(widths, np.int64))


def canonical_runs(starts, ends, owner, heights, widths) -> Runs:
    """Union of possibly overlapping, unsorted, empty or touching intervals, per owner: a canonical `Runs`."""
    heights = np.asarray(heights, np.int64)
    widths = np.asarray(widths, np.int64)
    starts = np.asarray(starts, np.int64)
    ends = np.asarray(ends, np.int64)
    owner = np.asarray(owner, np.int64)
    keep = ends > starts
    starts, ends, owner = starts[keep], ends[keep], owner[keep]
    if len(starts) == 0:
        return empty_runs(heights, widths)
    stride = int((heights * widths).max()) + 1
    gs = owner * stride + starts  # exact integer offsets keep owners apart
    ge = owner * stride + ends
    order = np.argsort(gs, kind="stable")
    gs, ge = gs[order], ge[order]
    reach = np.maximum.accumulate(ge)
    new = np.ones(len(gs), bool)
    new[1:] = gs[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(gs) - 1]
    out_owner = gs[first] // stride
    return Runs(gs[first] - out_owner * stride, reach[last] - out_owner * stride, out_owner, heights, widths)


# ----------------------------------------------------------------------------------------------------------
# counts <-> runs <-> strings


def runs_from_counts(counts: np.ndarray, lengths: np.ndarray, heights, widths) -> Runs:
    """Runs of masks given by concatenated run-length `counts` (`lengths[i]` counts for mask i).

    Raises:
        ValueError: when the counts of a mask are negative or do not sum to its `H * W`.
    """
    counts = np.asarray(counts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    heights = np.asarray(heights, np.int64)
    widths = np.asarray(widths, np.int64)
    n = len(lengths)
    if (counts < 0).any():
        raise ValueError("RLE `counts` must be non-negative run lengths; got a negative value")
    seg, idx = _local_index(lengths)
    totals = np.bincount(seg, weights=counts, minlength=n) if n else np.zeros(0)
    bad = np.flatnonzero(totals != heights * widths)
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"RLE {i}: `counts` sum to {int(totals[i])} but `size` [{heights[i]}, {widths[i]}] needs "
            f"{heights[i] * widths[i]} pixels"
        )
    run_end = _segmented_cumsum(counts, seg)
    fg = (idx % 2) == 1
    return canonical_runs(run_end[fg] - counts[fg], run_end[fg], seg[fg], heights, widths)


def counts_from_runs(runs: Runs) -> tuple[np.ndarray, np.ndarray]:
    """Canonical COCO run lengths of `runs`: (concatenated counts, number of counts per mask).

    Canonical means what `encode` of the decoded mask gives: zeros first (possibly 0), no empty runs
    inside, and no trailing empty run (a mask of all zeros is `[H * W]`).
    """
    n = runs.n
    hw = runs.heights * runs.widths
    num = np.bincount(runs.owner, minlength=n).astype(np.int64)
    last_end = np.zeros(n, np.int64)
    if len(runs.ends):
        last = np.r_[np.flatnonzero(np.diff(runs.owner)), len(runs.owner) - 1]
        last_end[runs.owner[last]] = runs.ends[last]
    tail = hw - last_end
    has_tail = (tail > 0) | (num == 0)
    lengths = 2 * num + has_tail
    offsets = _segment_offsets(lengths)
    out = np.zeros(int(lengths.sum()), np.int64)
    if len(runs.starts):
        _, local = _local_index(num)
        prev_end = np.r_[0, runs.ends[:-1]]
        prev_end[local == 0] = 0
        pos = offsets[runs.owner] + 2 * local
        out[pos] = runs.starts - prev_end
        out[pos + 1] = runs.ends - runs.starts
    tail_owner = np.flatnonzero(has_tail)
    out[offsets[tail_owner] + 2 * num[tail_owner]] = tail[tail_owner]
    return out, lengths


def strings_from_counts(counts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """COCO compressed strings of concatenated run lengths (`lengths[i]` counts for string i)."""
    counts = np.asarray(counts, np.int64)
    lengths = np.asarray(lengths, np.int64)
    seg, idx = _local_index(lengths)
    x = counts.copy()
    rel = idx > 2
    x[rel] -= counts[np.flatnonzero(rel) - 2]
    chars = np.full((len(x), 8), -1, np.int64)
    more = np.ones(len(x), bool)
    for k in range(8):
        c = x & 0x1F
        x = x >> 5  # arithmetic shift, as the C code's signed long
        cont = np.where((c & 0x10) != 0, x != -1, x != 0)
        chars[:, k] = np.where(more, c + 48 + np.where(cont, 0x20, 0), -1)
        more &= cont
        if not more.any():
            break
    per_value = (chars >= 0).sum(axis=1)
    flat = chars[chars >= 0].astype(np.uint8).tobytes()
    per_string = np.bincount(seg, weights=per_value, minlength=len(lengths)).astype(np.int64)
    bounds = np.r_[0, np.cumsum(per_string)]
    return [flat[bounds[i] : bounds[i + 1]].decode("ascii") for i in range(len(lengths))]


def counts_from_strings(strings: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of COCO compressed strings (str or bytes): (concatenated counts, counts per string).

    Raises:
        ValueError: for characters outside ASCII 48-111 or a string that ends inside a number.
    """
    raw = [s.encode("ascii") if isinstance(s, str) else bytes(s) for s in strings]
    n_chars = np.array([len(s) for s in raw], np.int64)
    buf = np.frombuffer(b"".join(raw), np.uint8).astype(np.int64) - 48
    if len(buf) and ((buf < 0) | (buf > 63)).any():
        raise ValueError("RLE `counts` string holds characters outside the COCO alphabet (ASCII 48-111)")
    last = np.r_[n_chars.cumsum() - 1][n_chars > 0]
    if len(buf) and (buf[last] & 0x20).any():
        raise ValueError("RLE `counts` string ends in the middle of a number")
    end = (buf & 0x20) == 0
    first = np.r_[0, np.flatnonzero(end)[:-1] + 1] if len(buf) else np.zeros(0, np.int64)
    value_of_char = np.cumsum(end) - end
    k = np.arange(len(buf)) - first[value_of_char] if len(buf) else np.zeros(0, np.int64)
    vals = np.add.reduceat((buf & 0x1F) << (5 * k), first) if len(buf) else np.zeros(0, np.int64)
    nchar = np.diff(np.r_[first, len(buf)])
    neg = (buf[np.flatnonzero(end)] & 0x10) != 0
    vals = np.where(neg, vals - (np.int64(1) << (5 * nchar)), vals)
    # number of values per string
    string_of_char = np.repeat(np.arange(len(raw)), n_chars)
    lengths = np.bincount(string_of_char[end], minlength=len(raw)).astype(np.int64)
    seg, idx = _local_index(lengths)
    # undo the delta coding: value i (i > 2) is relative to value i - 2, so the odd values and the even
    # values from index 2 on are running sums (index 0 stands alone)
    seg, idx = _local_index(lengths)
    chain = np.where(idx == 0, 0, np.where(idx % 2 == 1, 1, 2))
    order = np.argsort(seg * 3 + chain, kind="stable")
    out = np.empty_like(vals)
    out[order] = _segmented_cumsum(vals[order], (seg * 3 + chain)[order])
    return out, lengths


# ----------------------------------------------------------------------------------------------------------
# polygons


def toggles_from_polygons(polygons: Sequence, heights, widths) -> tuple[np.ndarray, np.ndarray]:
    """Column-crossing positions of polygon boundaries, as the COCO API traces them.

    Args:
        polygons: sequence of flat coordinate lists `[x0, y0, x1, y1, ...]` (an odd trailing value is
            ignored, as the COCO API does).
        heights, widths: `[len(polygons)]` image size of each polygon.

    Returns:
        (positions, polygon index), positions `x * H + y` in column-major order; a pixel is inside the
        polygon when an odd number of positions of its polygon are <= its own position.
    """
    heights = np.asarray(heights, np.int64)
    widths = np.asarray(widths, np.int64)
    arrays = [np.asarray(p, np.float64).reshape(-1) for p in polygons]
    k = np.array([len(a) // 2 for a in arrays], np.int64)
    if k.sum() == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    xy = np.concatenate([a[: 2 * n] for a, n in zip(arrays, k)])
    x = np.trunc(_SCALE * xy[0::2] + 0.5).astype(np.int64)  # C (int) cast truncates toward zero
    y = np.trunc(_SCALE * xy[1::2] + 0.5).astype(np.int64)
    poly, local = _local_index(k)
    first = _segment_offsets(k)
    nxt = np.where(local + 1 < k[poly], np.arange(len(x)) + 1, first[poly])
    # one edge per vertex, from it to the next (closing the polygon)
    xs, xe, ys, ye = x, x[nxt], y, y[nxt]
    dx, dy = np.abs(xe - xs), np.abs(ye - ys)
    along_x = dx >= dy
    flip = (along_x & (xs > xe)) | (~along_x & (ys > ye))
    xs, xe = np.where(flip, xe, xs), np.where(flip, xs, xe)
    ys, ye = np.where(flip, ye, ys), np.where(flip, ys, ye)
    span = np.where(along_x, dx, dy)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(along_x, (ye - ys) / dx, (xe - xs) / dy)
    slope = np.where(span == 0, 0.0, slope)  # a repeated vertex: its single point never crosses a column
    edge, d = _local_index(span + 1)
    t = np.where(flip[edge], span[edge] - d, d)
    minor = np.trunc(np.where(along_x, ys, xs)[edge].astype(np.float64) + slope[edge] * t + 0.5).astype(np.int64)
    u = np.where(along_x[edge], t + xs[edge], minor)
    v = np.where(along_x[edge], minor, t + ys[edge])
    owner = poly[edge]
    # downsample: one position wherever the traced boundary moves to another column
    step = (owner[1:] == owner[:-1]) & (u[1:] != u[:-1])
    u1, u0 = u[1:][step], u[:-1][step]
    v1, v0 = v[1:][step], v[:-1][step]
    owner = owner[1:][step]
    h = heights[owner]
    w = widths[owner]
    xd = (np.where(u1 < u0, u1, u1 - 1).astype(np.float64) + 0.5) / _SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= (w - 1).astype(np.float64))
    yd = (np.minimum(v1, v0).astype(np.float64) + 0.5) / _SCALE - 0.5
    yd = np.ceil(np.clip(yd, 0.0, h.astype(np.float64)))
    pos = xd[keep].astype(np.int64) * h[keep] + yd[keep].astype(np.int64)
    return pos, owner[keep]


def runs_from_polygons(polygons: Sequence, polygon_owner, heights, widths) -> Runs:
    """Runs of masks, each the union of its polygons (`polygon_owner[i]`: mask of polygon i)."""
    heights = np.asarray(heights, np.int64)
    widths = np.asarray(widths, np.int64)
    polygon_owner = np.asarray(polygon_owner, np.int64).reshape(-1)
    if len(polygons) == 0:
        return empty_runs(heights, widths)
    ph, pw = heights[polygon_owner], widths[polygon_owner]
    pos, poly = toggles_from_polygons(polygons, ph, pw)
    hw = ph * pw
    inside = pos < hw[poly]  # crossings at H * W are past the end
    pos, poly = pos[inside], poly[inside]
    order = np.lexsort((pos, poly))
    pos, poly = pos[order], poly[order]
    # crossings at the same place cancel in pairs
    new = np.r_[True, (pos[1:] != pos[:-1]) | (poly[1:] != poly[:-1])] if len(pos) else np.zeros(0, bool)
    first = np.flatnonzero(new)
    mult = np.diff(np.r_[first, len(pos)])
    odd = first[mult % 2 == 1]
    pos, poly = pos[odd], poly[odd]
    # pair consecutive crossings of each polygon into intervals; an unpaired last one runs to H * W
    num = np.bincount(poly, minlength=len(polygons))
    _, local = _local_index(num)
    is_start = local % 2 == 0
    ends = np.where(np.r_[local[1:] == local[:-1] + 1, False], np.r_[pos[1:], 0], hw[poly])
    return canonical_runs(pos[is_start], ends[is_start], polygon_owner[poly[is_start]], heights, widths)


def runs_from_boxes(boxes, heights, widths) -> Runs:
    """Runs of `[N, 4]` `xywh` boxes rasterised as the COCO API's `frBbox` (a 4-vertex polygon)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    xs, ys = b[:, 0], b[:, 1]
    xe, ye = xs + b[:, 2], ys + b[:, 3]
    polys = list(np.stack([xs, ys, xs, ye, xe, ye, xe, ys], axis=1))
    return runs_from_polygons(polys, np.arange(len(b)), heights, widths)


# ----------------------------------------------------------------------------------------------------------
# measurements


def runs_area(runs: Runs) -> np.ndarray:
    """Foreground pixel count of each mask, `[n]` int64."""
    return np.bincount(runs.owner, weights=runs.ends - runs.starts, minlength=runs.n).astype(np.int64)


def runs_bbox(runs: Runs) -> np.ndarray:
    """Tight `xywh` box of each mask (`[0, 0, 0, 0]` when empty), as the COCO API's `toBbox`, `[n, 4]`."""
    out = np.zeros((runs.n, 4), np.float64)
    if len(runs.starts) == 0:
        return out
    h = runs.heights[runs.owner]
    x0, y0 = runs.starts // h, runs.starts % h
    x1, y1 = (runs.ends - 1) // h, (runs.ends - 1) % h
    across = x0 < x1
    y0 = np.where(across, 0, y0)
    y1 = np.where(across, h - 1, y1)
    big = np.iinfo(np.int64).max
    xmin = np.full(runs.n, big)
    ymin = np.full(runs.n, big)
    xmax = np.full(runs.n, -1)
    ymax = np.full(runs.n, -1)
    np.minimum.at(xmin, runs.owner, x0)
    np.minimum.at(ymin, runs.owner, y0)
    np.maximum.at(xmax, runs.owner, x1)
    np.maximum.at(ymax, runs.owner, y1)
    some = xmax >= 0
    out[some] = np.stack([xmin, ymin, xmax - xmin + 1, ymax - ymin + 1], axis=1)[some]
    return out


def _coverage(runs: Runs, stride: int):
    """Global sorted interval starts, lengths and exclusive cumulative lengths, owners `stride` apart."""
    gs = runs.owner * stride + runs.starts
    length = runs.ends - runs.starts
    return gs, length, np.cumsum(length) - length


def _covered_before(gs, length, before, points):
    """Foreground length of the global interval set before each of `points`."""
    k = np.searchsorted(gs, points, side="right") - 1
    kk = np.maximum(k, 0)
    val = before[kk] + np.minimum(points - gs[kk], length[kk]) if len(gs) else np.zeros(len(points), np.int64)
    return np.where(k >= 0, val, 0)


def pair_intersections(a: Runs, b: Runs, ia, ib) -> np.ndarray:
    """Foreground overlap (pixels) of mask `a[ia[p]]` with mask `b[ib[p]]` for every pair p, `[P]` int64.

    Each interval of the b-mask is measured against the a-mask through the a-mask's cumulative coverage,
    so the work is linear in the intervals of the b-side masks of the pairs.
    """
    ia = np.asarray(ia, np.int64)
    ib = np.asarray(ib, np.int64)
    if len(ia) == 0 or len(a.starts) == 0 or len(b.starts) == 0:
        return np.zeros(len(ia), np.int64)
    stride = int(max((a.heights * a.widths).max(), (b.heights * b.widths).max())) + 1
    gs, length, before = _coverage(a, stride)
    num_b = np.bincount(b.owner, minlength=b.n).astype(np.int64)
    first_b = _segment_offsets(num_b)
    pair, local = _local_index(num_b[ib])
    j = first_b[ib[pair]] + local
    off = ia[pair] * stride
    upto_end = _covered_before(gs, length, before, b.ends[j] + off)
    inside = upto_end - _covered_before(gs, length, before, b.starts[j] + off)
    return np.bincount(pair, weights=inside, minlength=len(ia)).astype(np.int64)


def pair_iou(dt: Runs, gt: Runs, idt, igt, crowd) -> np.ndarray:
    """COCO mask IoU of pairs: overlap / union, or overlap / dt area where the gt is a crowd; 0 without overlap."""
    idt = np.asarray(idt, np.int64)
    igt = np.asarray(igt, np.int64)
    crowd = np.asarray(crowd, bool)
    bd, bg = runs_bbox(dt), runs_bbox(gt)
    # only pairs whose boxes overlap can share pixels
    d, g = bd[idt], bg[igt]
    touch = (np.minimum(d[:, 0] + d[:, 2], g[:, 0] + g[:, 2]) > np.maximum(d[:, 0], g[:, 0])) & (
        np.minimum(d[:, 1] + d[:, 3], g[:, 1] + g[:, 3]) > np.maximum(d[:, 1], g[:, 1])
    )
    inter = np.zeros(len(idt), np.int64)
    sel = np.flatnonzero(touch)
    if len(sel):
        # measure the side with fewer intervals against the other
        nd = np.bincount(dt.owner, minlength=dt.n)[idt[sel]].sum()
        ng = np.bincount(gt.owner, minlength=gt.n)[igt[sel]].sum()
        if ng <= nd:
            inter[sel] = pair_intersections(dt, gt, idt[sel], igt[sel])
        else:
            inter[sel] = pair_intersections(gt, dt, igt[sel], idt[sel])
    ad, ag = runs_area(dt)[idt], runs_area(gt)[igt]
    union = np.where(crowd, ad, ad + ag - inter)
    return np.where(inter > 0, inter / np.maximum(union, 1), 0.0)


# ----------------------------------------------------------------------------------------------------------
# COCO objects <-> runs


def size_of(obj, where: str) -> tuple[int, int]:
    size = obj.get("size") if isinstance(obj, dict) else None
    if size is None or len(size) != 2:
        raise ValueError(f"{where} must be a dict with `size` [H, W] and `counts`; got {type(obj).__name__}")
    return int(size[0]), int(size[1])


def runs_from_rles(rles: Sequence[dict], where: str = "rles") -> Runs:
    """Runs of RLE dicts with compressed (str/bytes) or uncompressed (list of ints) `counts`."""
    sizes = np.array([size_of(r, f"`{where}[{i}]`") for i, r in enumerate(rles)], np.int64).reshape(-1, 2)
    is_str = np.array([isinstance(r.get("counts"), (str, bytes, bytearray)) for r in rles], bool)
    lengths = np.zeros(len(rles), np.int64)
    parts = []  # (mask indices, their concatenated counts, counts per mask)
    packed = np.flatnonzero(is_str)
    if len(packed):
        c, n = counts_from_strings([rles[i]["counts"] for i in packed])
        parts.append((packed, c, n))
    plain = np.flatnonzero(~is_str)
    if len(plain):
        arrays = []
        for i in plain:
            counts = rles[i].get("counts")
            if counts is None:
                raise ValueError(f"`{where}[{i}]` has no `counts`")
            arrays.append(np.asarray(counts, np.int64).reshape(-1))
        parts.append((plain, np.concatenate(arrays), np.array([len(a) for a in arrays], np.int64)))
    for idx, _, n in parts:
        lengths[idx] = n
    offsets = _segment_offsets(lengths)
    counts = np.zeros(int(lengths.sum()), np.int64)
    for idx, c, n in parts:
        seg, local = _local_index(n)
        counts[offsets[idx[seg]] + local] = c
    return runs_from_counts(counts, lengths, sizes[:, 0], sizes[:, 1])


def runs_from_segmentations(segmentations: Sequence, heights, widths, where: str = "segmentation") -> Runs:
    """Runs of COCO `segmentation` fields as the COCO API's `annToRLE` reads them.

    A list is a set of polygons (merged by union; a part with fewer than 3 vertices encloses nothing - the
    COCO API would try to read a first part of exactly 4 numbers as a box and fail); a dict is an RLE
    (compressed or not; the image size given by `heights` / `widths` must match its `size`).
    """
    heights = np.asarray(heights, np.int64)
    widths = np.asarray(widths, np.int64)
    polys, poly_owner, rle_idx, rles = [], [], [], []
    for i, seg in enumerate(segmentations):
        if isinstance(seg, dict):
            rle_idx.append(i)
            rles.append(seg)
        elif isinstance(seg, (list, tuple, np.ndarray)):
            parts = [np.asarray(p, np.float64).reshape(-1) for p in seg]
            polys.extend(parts)
            poly_owner.extend([i] * len(parts))
        else:
            raise TypeError(f"`{where}[{i}]` must be a polygon list or an RLE dict; got {type(seg).__name__}")
    runs = runs_from_polygons(polys, np.asarray(poly_owner, np.int64), heights, widths)
    if not rle_idx:
        return runs
    r = runs_from_rles(rles, where)
    idx = np.asarray(rle_idx, np.int64)
    bad = np.flatnonzero((r.heights != heights[idx]) | (r.widths != widths[idx]))
    if len(bad):
        j = int(bad[0])
        raise ValueError(
            f"`{where}[{rle_idx[j]}]` has RLE size [{r.heights[j]}, {r.widths[j]}] but its image is "
            f"[{heights[idx[j]]}, {widths[idx[j]]}]"
        )
    return canonical_runs(
        np.r_[runs.starts, r.starts], np.r_[runs.ends, r.ends], np.r_[runs.owner, idx[r.owner]], heights, widths
    )


def runs_from_masks(masks: np.ndarray) -> Runs:
    """Runs of a binary mask stack `[N, H, W]` (nonzero is foreground)."""
    n, h, w = masks.shape
    flat = (np.asarray(masks) != 0).transpose(0, 2, 1).reshape(n, h * w).astype(np.int8)
    change = np.diff(flat, axis=1, prepend=0, append=0)
    _, starts = np.nonzero(change == 1)
    owner, ends = np.nonzero(change == -1)
    full = np.full(n, h, np.int64), np.full(n, w, np.int64)
    return Runs(starts.astype(np.int64), ends.astype(np.int64), owner.astype(np.int64), *full)


def masks_from_runs(runs: Runs) -> np.ndarray:
    """Binary masks `[N, H, W]` uint8 of runs that all have one size."""
    if runs.n == 0:
        return np.zeros((0, 0, 0), np.uint8)
    h, w = int(runs.heights[0]), int(runs.widths[0])
    if ((runs.heights != h) | (runs.widths != w)).any():
        raise ValueError("masks of different sizes cannot be decoded into one array; decode them one by one")
    size = runs.n * h * w + 1
    base = runs.owner * (h * w)
    delta = np.bincount(base + runs.starts, minlength=size) - np.bincount(base + runs.ends, minlength=size)
    flat = np.cumsum(delta[:-1]).astype(np.uint8).reshape(runs.n, w, h)
    return np.ascontiguousarray(flat.transpose(0, 2, 1))


def rles_from_runs(runs: Runs) -> list[dict]:
    """COCO compressed RLE dicts (`counts` as str) of runs."""
    counts, lengths = counts_from_runs(runs)
    strings = strings_from_counts(counts, lengths)
    return [{"size": [int(h), int(w)], "counts": s} for h, w, s in zip(runs.heights, runs.widths, strings)]


# ----------------------------------------------------------------------------------------------------------
# public functions


def _as_rle_list(rles, name: str) -> tuple[list[dict], bool]:
    if isinstance(rles, dict):
        return [rles], True
    if isinstance(rles, (list, tuple)):
        return list(rles), False
    raise TypeError(f"`{name}` must be an RLE dict or a list of them; got {type(rles).__name__}")


def encode(masks) -> dict | list[dict]:
    """Encodes binary masks as COCO compressed RLE.

    Args:
        masks: `[H, W]` or `[N, H, W]` array; nonzero is foreground.

    Returns:
        One `{"size": [H, W], "counts": str}` dict for a 2-D input, else a list of N of them. The strings
        equal those of `pycocotools.mask.encode` (which returns bytes).

    Example:
        >>> encode(np.ones((2, 2), np.uint8))["counts"]
        '04'
    """
    arr = np.asarray(masks)
    if arr.ndim not in (2, 3):
        raise ValueError(f"`masks` must have shape [H, W] or [N, H, W]; got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`masks` must be numeric or boolean; got dtype {arr.dtype}")
    out = rles_from_runs(runs_from_masks(arr[None] if arr.ndim == 2 else arr))
    return out[0] if arr.ndim == 2 else out


def decode(rles) -> np.ndarray:
    """Decodes COCO RLE (compressed or uncompressed) to uint8 masks.

    Args:
        rles: one RLE dict, or a list of RLE dicts of one size.

    Returns:
        `[H, W]` for one dict, `[N, H, W]` for a list.

    Example:
        >>> decode({"size": [2, 2], "counts": [1, 3]}).tolist()
        [[0, 1], [1, 1]]
    """
    items, single = _as_rle_list(rles, "rles")
    masks = masks_from_runs(runs_from_rles(items))
    return masks[0] if single else masks


def area(rles) -> int | np.ndarray:
    """Foreground pixel count of RLE dict(s): an int for one dict, an int64 array for a list."""
    items, single = _as_rle_list(rles, "rles")
    a = runs_area(runs_from_rles(items))
    return int(a[0]) if single else a


def to_bbox(rles) -> np.ndarray:
    """Tight `xywh` boxes of RLE dict(s) as `pycocotools.mask.toBbox`: `[4]` or `[N, 4]` float64."""
    items, single = _as_rle_list(rles, "rles")
    b = runs_bbox(runs_from_rles(items))
    return b[0] if single else b


def merge(rles, intersect: bool = False) -> dict:
    """Union (or intersection with `intersect=True`) of RLE dicts of one size, as one compressed RLE."""
    items, _ = _as_rle_list(rles, "rles")
    if not items:
        raise ValueError("`rles` must hold at least one RLE")
    r = runs_from_rles(items)
    if ((r.heights != r.heights[0]) | (r.widths != r.widths[0])).any():
        raise ValueError("`rles` must all have the same `size` to be merged")
    h, w = r.heights[:1], r.widths[:1]
    if not intersect:
        return rles_from_runs(canonical_runs(r.starts, r.ends, np.zeros_like(r.owner), h, w))[0]
    # a pixel is in the intersection when it is covered by every mask
    hw = int(h[0] * w[0])
    depth = np.cumsum(np.bincount(r.starts, minlength=hw + 1) - np.bincount(r.ends, minlength=hw + 1))[:-1]
    full = (depth == r.n).astype(np.uint8).reshape(1, int(w[0]), int(h[0])).transpose(0, 2, 1)
    return rles_from_runs(runs_from_masks(full))[0]


def iou(dt, gt, iscrowd=None) -> np.ndarray:
    """COCO mask IoU between detection and ground-truth RLEs, as `pycocotools.mask.iou`.

    Args:
        dt: list of D RLE dicts.
        gt: list of G RLE dicts, all of the detections' size.
        iscrowd: `[G]` flags; for a crowd ground truth the IoU is overlap / area of the detection.

    Returns:
        `[D, G]` float64.
    """
    d_items, _ = _as_rle_list(dt, "dt")
    g_items, _ = _as_rle_list(gt, "gt")
    crowd = np.zeros(len(g_items), bool) if iscrowd is None else np.asarray(iscrowd, bool).reshape(-1)
    if len(crowd) != len(g_items):
        raise ValueError(f"`iscrowd` must have one flag per gt ({len(g_items)}); got {len(crowd)}")
    rd, rg = runs_from_rles(d_items, "dt"), runs_from_rles(g_items, "gt")
    if rd.n and rg.n and ((rd.heights[:, None] != rg.heights[None]) | (rd.widths[:, None] != rg.widths[None])).any():
        raise ValueError("`dt` and `gt` masks must all have the same `size`")
    ii, jj = np.meshgrid(np.arange(rd.n), np.arange(rg.n), indexing="ij")
    ii, jj = ii.reshape(-1), jj.reshape(-1)
    return pair_iou(rd, rg, ii, jj, crowd[jj]).reshape(rd.n, rg.n)


def from_polygons(polygons, height: int, width: int) -> dict:
    """Rasterises one object's polygons (union) into a compressed RLE exactly as the COCO API.

    Args:
        polygons: list of flat `[x0, y0, x1, y1, ...]` pixel coordinate lists.
        height, width: image size.

    Example:
        >>> int(area(from_polygons([[0, 0, 4, 0, 4, 4, 0, 4]], 8, 8)))
        16
    """
    if not isinstance(polygons, (list, tuple)):
        raise TypeError(f"`polygons` must be a list of coordinate lists; got {type(polygons).__name__}")
    runs = runs_from_polygons(list(polygons), np.zeros(len(polygons), np.int64), [int(height)], [int(width)])
    return rles_from_runs(runs)[0]


def from_bboxes(boxes, height: int, width: int) -> list[dict]:
    """Rasterises `[N, 4]` `xywh` boxes into compressed RLEs as `pycocotools.mask.frPyObjects` does."""
    b = np.asarray(boxes, np.float64)
    if b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(f"`boxes` must have shape [N, 4] (x, y, w, h); got shape {b.shape}")
    n = len(b)
    return rles_from_runs(runs_from_boxes(b, np.full(n, int(height)), np.full(n, int(width))))
