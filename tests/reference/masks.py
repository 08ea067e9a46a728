"""Slow numpy references for the instance-mask ops: pasting masks into the image, cropping mask targets.

Plain loops over the definitions (they are the spec):

- `paste_masks`: image pixel `(i, j)` has centre `(x, y) = (j + 0.5, i + 0.5)`; for a box `[x1, y1, x2, y2]`
  with a mask of `h x w` cells it reads the mask at column `u = (x - x1) * w / (x2 - x1) - 0.5` and row
  `v = (y - y1) * h / (y2 - y1) - 0.5` by bilinear interpolation between the four cells around `(v, u)`,
  a cell outside the mask counting as 0. Boxes with `x2 <= x1` or `y2 <= y1`, a non-finite coordinate or
  all four coordinates -1 (padding) give an all-zero mask. Computed in float64 from the float32 inputs.
- `crop_masks`: RoIAlign (`tests/reference/roi_align.py`) of mask `indices[b, r]` of image `b` over roi
  `r`, scale 1; 0 for a negative index.
"""

from __future__ import annotations

import math

import numpy as np

from tests.reference import roi_align as roi_align_ref


def _cell(mask, row, col) -> float:
    """`mask[row, col]`, or 0 for a cell outside the mask."""
    height, width = mask.shape
    if 0 <= row < height and 0 <= col < width:
        return float(mask[row, col])
    return 0.0


def bilinear_zero_padded(mask, v, u) -> float:
    """Bilinear interpolation of `mask [h, w]` at row `v`, column `u`, zero beyond the mask."""
    row = math.floor(v)
    col = math.floor(u)
    dv = v - row
    du = u - col
    return (
        (1.0 - dv) * (1.0 - du) * _cell(mask, row, col)
        + (1.0 - dv) * du * _cell(mask, row, col + 1)
        + dv * (1.0 - du) * _cell(mask, row + 1, col)
        + dv * du * _cell(mask, row + 1, col + 1)
    )


def _pastes_nothing(box) -> bool:
    x1, y1, x2, y2 = box
    if all(c == -1.0 for c in box):
        return True
    if not all(math.isfinite(c) for c in box):
        return True
    return not (x2 > x1 and y2 > y1)


def paste_one(mask, box, height, width) -> np.ndarray:
    """The `[height, width]` image of one mask `[h, w]` pasted into `box`."""
    out = np.zeros((height, width), np.float64)
    box = [float(c) for c in np.asarray(box, np.float32)]
    if _pastes_nothing(box):
        return out
    x1, y1, x2, y2 = box
    h, w = mask.shape
    for i in range(height):
        y = i + 0.5
        v = (y - y1) * h / (y2 - y1) - 0.5
        if v <= -1.0 or v >= h:
            continue  # every cell around this row is outside the mask
        for j in range(width):
            x = j + 0.5
            u = (x - x1) * w / (x2 - x1) - 0.5
            if u <= -1.0 or u >= w:
                continue
            out[i, j] = bilinear_zero_padded(mask, v, u)
    return out


def paste_masks(masks, boxes, image_size) -> np.ndarray:
    """`masks [B, N, h, w]` pasted into their `boxes [B, N, 4]` of an image of `image_size (H, W)` -> `[B, N, H, W]`."""
    masks = np.asarray(masks, np.float64)
    boxes = np.asarray(boxes, np.float32)
    height, width = (int(s) for s in image_size)
    batch, count = boxes.shape[:2]
    out = np.zeros((batch, count, height, width), np.float64)
    for b in range(batch):
        for n in range(count):
            out[b, n] = paste_one(masks[b, n], boxes[b, n], height, width)
    return out.astype(np.float32)


def crop_masks(masks, rois, indices, output_size, sampling_ratio=0, aligned=True) -> np.ndarray:
    """RoIAlign of mask `indices[b, r]` over roi `rois[b, r]` for every `(b, r)` -> `[B, R, ph, pw]`."""
    masks = np.asarray(masks, np.float32)
    rois = np.asarray(rois, np.float32)
    indices = np.asarray(indices)
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    batch, count = rois.shape[:2]
    out = np.zeros((batch, count, ph, pw), np.float32)
    for b in range(batch):
        for r in range(count):
            k = int(indices[b, r])
            if k < 0:
                continue
            fmap = masks[b, k][None, :, :, None]  # one image, one channel
            pooled = roi_align_ref.roi_align(fmap, rois[b, r][None, None], (ph, pw), 1.0, sampling_ratio, aligned)
            out[b, r] = pooled[0, 0, :, :, 0]
    return out
