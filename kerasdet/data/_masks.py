"""Numpy helpers for instance masks: tight boxes, COCO run-length encoding, polygons.

Conventions (DESIGN.md section 3): continuous pixel coordinates, pixel ``(row i, col j)``
covers ``[j, j + 1) x [i, i + 1)``. The tight box of a mask is therefore
``[min col, min row, max col + 1, max row + 1]``. COCO run-length encoding counts runs of
the column-major (Fortran order) flattened mask, starting with a run of zeros; the
compressed string form stores each count (delta coded from the count two places back after
the first three) in 6-bit characters offset by 48, five payload bits per character. The
compressed codec itself is `kerasdet.metrics._rle` (vectorised, equal to pycocotools).
"""

import numpy as np

from kerasdet.metrics import _rle


def mask_tight_box(mask):
    """Returns the tight xyxy box of a 2-D mask as float32 [4], or None when it is empty.

    Args:
        mask: array [H, W], nonzero where the object is.

    Returns:
        float32 [4] ``[x1, y1, x2, y2]`` in continuous pixel coordinates, or None.

    Example:
        >>> m = np.zeros((5, 6), np.uint8); m[1:3, 2:5] = 1
        >>> mask_tight_box(m).tolist()
        [2.0, 1.0, 5.0, 3.0]
    """
    mask = np.asarray(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def mask_to_counts(mask):
    """Uncompressed COCO RLE counts (a list of ints) of a 2-D mask."""
    flat = np.asarray(mask).astype(bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds)
    if flat[0]:
        runs = np.concatenate([[0], runs])
    return [int(r) for r in runs]


def decode_counts(text):
    """Expands COCO's compressed RLE string into counts; raises ValueError if malformed.

    A scalar reference decoder; `rle_to_mask` decodes with `kerasdet.metrics._rle` instead.
    """
    counts = []
    p = 0
    n = len(text)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("compressed RLE string ends in the middle of a count")
            c = ord(text[p]) - 48
            if c < 0 or c > 63:
                raise ValueError(f"compressed RLE string has an invalid character {text[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def mask_to_rle(mask):
    """COCO compressed RLE dict ``{"size": [H, W], "counts": str}`` of a 2-D mask.

    The counts string is `kerasdet.metrics._rle.encode`'s (pycocotools' own), except that a
    zero-size mask (H or W is 0) has the empty string.

    Example:
        >>> rle = mask_to_rle(np.eye(3, dtype=np.uint8))
        >>> rle_to_mask(rle).tolist() == np.eye(3).tolist()
        True
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape [H, W]; received shape {mask.shape}")
    if mask.size == 0:
        return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": ""}
    return _rle.encode(mask)


def rle_to_mask(rle):
    """Decodes a COCO RLE dict (compressed string or uncompressed list counts) to uint8 [H, W].

    Decoding is `kerasdet.metrics._rle.decode`'s; it raises ValueError for malformed counts
    (counts that do not sum to H*W, negative counts, characters outside the COCO alphabet).
    """
    height, width = (int(v) for v in rle["size"])
    return _rle.decode({"size": [height, width], "counts": rle["counts"]})


def polygons_to_mask(polygons, height, width):
    """Rasterises COCO polygons (lists ``[x1, y1, x2, y2, ...]`` in continuous coordinates).

    A pixel is inside a polygon when its centre ``(j + 0.5, i + 0.5)`` is (even-odd rule,
    left/top edges inclusive); the parts of a multi-part segmentation form a union, as in
    pycocotools.

    Returns:
        uint8 [height, width] mask.
    """
    mask = np.zeros((height, width), bool)
    for poly in polygons:
        mask |= _fill_polygon(np.asarray(poly, np.float64).reshape(-1, 2), height, width)
    return mask.astype(np.uint8)


def _fill_polygon(points, height, width):
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    rows = np.arange(height, dtype=np.float64)[:, None] + 0.5          # [H, 1]
    crosses = ((y0 <= rows) & (rows < y1)) | ((y1 <= rows) & (rows < y0))  # [H, E]
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
    xs = np.where(crosses, xs, np.inf)
    xs.sort(axis=1)
    n = crosses.sum(axis=1)
    diff = np.zeros((height, width + 1), np.int32)
    for k in range(0, xs.shape[1] - 1, 2):
        active = np.flatnonzero(n > k + 1)
        if active.size == 0:
            break
        start = np.clip(np.ceil(xs[active, k] - 0.5), 0, width).astype(np.int64)
        end = np.clip(np.ceil(xs[active, k + 1] - 0.5), 0, width).astype(np.int64)
        np.add.at(diff, (active, start), 1)
        np.add.at(diff, (active, end), -1)
    return np.cumsum(diff[:, :width], axis=1) > 0
