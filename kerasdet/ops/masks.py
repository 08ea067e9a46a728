"""Instance-mask ops of Mask R-CNN (He et al., 2017, https://arxiv.org/abs/1703.06870).

- `paste_masks` puts the small per-box masks the mask head predicts (e.g. 28x28) back into the image:
  image pixel `(i, j)` (centre `(j + 0.5, i + 0.5)`) reads the mask of box `[x1, y1, x2, y2]` at column
  `u = (x - x1) * w / (x2 - x1) - 0.5` and row `v = (y - y1) * h / (y2 - y1) - 0.5` by bilinear
  interpolation with zeros beyond the mask (what `grid_sample(align_corners=False, padding_mode="zeros")`
  computes on the box region).
- `crop_masks` makes the mask head's training targets: RoIAlign (as `roi_align` computes it) of one
  ground-truth mask per RoI, the one `indices` names.

How `paste_masks` is computed: bilinear interpolation with zero padding is separable, and along one axis
it is a fixed linear map from the `h` mask rows to the `H` image rows: image row `i` takes
`max(0, 1 - |v_i - a|)` of mask row `a` (at most two rows are nonzero, and a point half a cell beyond
the mask keeps half of the edge row). So each pasted mask is `Wy @ mask @ Wx^T`, two batched matrix
products with weights `Wy [H, h]`, `Wx [W, w]` per box. The sample coordinates are computed directly for
every pixel (no running sum from the image origin), so they keep float32 precision relative to the mask
size even for a small box far from the origin of a large image: the result is within a few 1e-6 of the
float64 definition. This is as fast on CPU as one `crop_and_resize` over the padded masks and, unlike
it, compiles with XLA.

`crop_masks` reshapes the masks to one `[B * M, H, W, 1]` batch of single-channel images and runs the
RoIAlign core of `_roi_align.py` once, each roi reading image `b * M + indices[b, r]`: it never builds
`[B, R, H, W]` nor pools a roi over masks it does not need.
"""

from __future__ import annotations

import numbers

import numpy as np
import tensorflow as tf

from kerasdet.ops._checks import as_float_tensor, check_last_dim, check_rank, output_size_pair
from kerasdet.ops._roi_align import _align, _check_sampling, _flatten_rois, _geometry
from kerasdet.ops.boxes import padding_rows

__all__ = ["paste_masks", "crop_masks"]


# --------------------------------------------------------------------------------------------------
# argument checks


def _numeric_dtype(value):
    """The dtype of `value` as a tf.DType, or None when it has none (lists) or no tf equivalent."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        dtype = np.asarray(value).dtype
    try:
        return tf.as_dtype(dtype)
    except TypeError:
        return None


def _masks_tensor(value, name, keep_uint8):
    """`value` as a float32 tensor (bools as 0 / 1); uint8 and bool stay uint8 when `keep_uint8`."""
    dtype = _numeric_dtype(value)
    if dtype == tf.bool or (keep_uint8 and dtype == tf.uint8):
        t = tf.cast(tf.convert_to_tensor(value), tf.uint8)
        return t if keep_uint8 else tf.cast(t, tf.float32)
    return as_float_tensor(value, name)


def _static_dim(t, axis):
    return t.shape[axis] if t.shape.rank is not None else None


def _check_same(name, dim, shapes, what):
    """Raises ValueError when the static sizes of dimension `what` disagree among `shapes` (name -> (tensor, axis))."""
    known = {n: _static_dim(t, a) for n, (t, a) in shapes.items()}
    sizes = {v for v in known.values() if v is not None}
    if len(sizes) > 1:
        got = ", ".join(f"{n} shape {tuple(t.shape)}" for n, (t, _) in shapes.items())
        raise ValueError(f"`{name}` must have the {what} ({dim}) of the other arguments; got {got}")


def _image_size(image_size):
    """`(H, W)` as Python ints when given as ints, else as int32 scalars of a `[2]` tensor.

    Raises TypeError naming `image_size` for non-integer input and ValueError for a static shape other
    than `[2]` or a negative size known before running.
    """
    expected = "(height, width): two non-negative ints or an int tensor of shape [2]"
    if isinstance(image_size, (list, tuple)) and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in image_size
    ):
        if len(image_size) != 2:
            raise ValueError(f"`image_size` must be {expected}; got {image_size!r}")
        height, width = int(image_size[0]), int(image_size[1])
        if height < 0 or width < 0:
            raise ValueError(f"`image_size` must be non-negative; got {image_size!r}")
        return height, width
    try:
        t = tf.convert_to_tensor(image_size)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`image_size` must be {expected}; got {image_size!r}") from err
    if not t.dtype.is_integer:
        raise TypeError(f"`image_size` must be {expected}; got dtype {t.dtype.name}")
    if t.shape.rank is not None and t.shape.as_list() not in ([2], [None]):
        raise ValueError(f"`image_size` must be {expected}; got shape {tuple(t.shape)}")
    t = tf.cast(t, tf.int32)
    static = tf.get_static_value(t)
    if static is not None:
        if static.shape != (2,):
            raise ValueError(f"`image_size` must be {expected}; got {static.tolist()!r}")
        if np.any(static < 0):
            raise ValueError(f"`image_size` must be non-negative; got {static.tolist()!r}")
        return int(static[0]), int(static[1])
    tf.debugging.assert_equal(tf.size(t), 2, message="`image_size` must have 2 entries (height, width)")
    tf.debugging.assert_non_negative(t, message="`image_size` must be non-negative")
    return t[0], t[1]


# --------------------------------------------------------------------------------------------------
# paste_masks


def _axis_weights(lo, hi, cells, pixels, valid):
    """Interpolation weights `[N, pixels, cells]` from `cells` mask cells to `pixels` image pixels along one axis.

    Pixel `k` (centre `k + 0.5`) reads the mask at `c = (k + 0.5 - lo) * cells / (hi - lo) - 0.5` and
    takes `max(0, 1 - |c - a|)` of cell `a`: bilinear interpolation with zeros beyond the mask. Boxes
    that are not `valid` (and non-finite coordinates) get all-zero weights.
    """
    centres = tf.range(pixels, dtype=tf.float32) + 0.5
    size = tf.cast(cells, tf.float32)
    coord = (centres[None, :] - lo[:, None]) * size / (hi - lo)[:, None] - 0.5
    coord = tf.where(tf.logical_and(valid[:, None], tf.math.is_finite(coord)), coord, -2.0)
    grid = tf.range(cells, dtype=tf.float32)
    return tf.nn.relu(1.0 - tf.abs(coord[:, :, None] - grid[None, None, :]))


def _rows_first(h, w, height, width):
    """Whether `Wy @ (mask @ Wx^T)` costs more than `(Wy @ mask) @ Wx^T` (static sizes only)."""
    if not all(isinstance(s, int) for s in (h, w, height, width)):
        return False
    columns_first = h * w * width + height * h * width
    rows_first = height * h * w + height * w * width
    return rows_first < columns_first


def paste_masks(masks, boxes, image_size) -> tf.Tensor:
    """Pastes per-box masks into the image (Mask R-CNN's inference step), `[B, N, h, w]` -> `[B, N, H, W]`.

    Image pixel `(i, j)` has centre `(x, y) = (j + 0.5, i + 0.5)`; for the box `[x1, y1, x2, y2]` it
    reads its mask at column `u = (x - x1) * w / (x2 - x1) - 0.5`, row `v = (y - y1) * h / (y2 - y1) - 0.5`
    by bilinear interpolation, the mask being 0 beyond its border (a point at `u = -0.5` gets half of
    column 0; `u <= -1` or `u >= w` gives 0). This is `grid_sample(align_corners=False,
    padding_mode="zeros")` over the box region. Boxes with zero or negative width or height, padding rows
    (all -1) and boxes with a non-finite coordinate give all-zero masks.

    The output is dense: 100 float32 masks at 800x1333 take ~430 MB, so paste the kept detections of one
    image at a time (or threshold and cast the result) when memory matters.

    Args:
        masks: `[B, N, h, w]` per-box masks (probabilities in `[0, 1]`, e.g. 28x28), any real dtype.
        boxes: `[B, N, 4]` boxes `(x1, y1, x2, y2)` in continuous image pixels; rows of -1 are padding.
        image_size: `(H, W)` as Python ints or an int tensor of shape `[2]` (may be dynamic in a
            `tf.function`).

    Returns:
        float32 `[B, N, H, W]`. Works with unknown `B`, `N`, `h`, `w`, `H`, `W` inside `tf.function`, and
        with XLA (`jit_compile=True`) when `image_size` is given as Python ints.

    Example:
        >>> paste_masks(tf.ones([1, 1, 2, 2]), [[[1.0, 1.0, 3.0, 3.0]]], (4, 4))[0, 0].numpy()
        array([[0., 0., 0., 0.],
               [0., 1., 1., 0.],
               [0., 1., 1., 0.],
               [0., 0., 0., 0.]], dtype=float32)
    """
    m = _masks_tensor(masks, "masks", keep_uint8=False)
    check_rank(m, "masks", 4, "[B, N, h, w]")
    b = as_float_tensor(boxes, "boxes")
    check_rank(b, "boxes", 3, "[B, N, 4] (x1, y1, x2, y2)")
    check_last_dim(b, "boxes", 4, "[B, N, 4] (x1, y1, x2, y2)")
    _check_same("boxes", "B", {"masks": (m, 0), "boxes": (b, 0)}, "batch size")
    _check_same("boxes", "N", {"masks": (m, 1), "boxes": (b, 1)}, "number of boxes")
    height, width = _image_size(image_size)

    shape = tf.shape(m)
    h_static, w_static = _static_dim(m, 2), _static_dim(m, 3)
    h = h_static if h_static is not None else shape[2]
    w = w_static if w_static is not None else shape[3]
    flat = tf.reshape(m, tf.stack([-1, h, w]))
    flat_boxes = tf.reshape(b, [-1, 4])
    x1, y1, x2, y2 = tf.unstack(flat_boxes, 4, axis=-1)
    valid = tf.logical_not(padding_rows(flat_boxes))
    valid = tf.logical_and(valid, tf.reduce_all(tf.math.is_finite(flat_boxes), axis=-1))
    valid = tf.logical_and(valid, tf.logical_and(x2 > x1, y2 > y1))

    wy = _axis_weights(y1, y2, h, height, valid)  # [BN, H, h]
    wx = _axis_weights(x1, x2, w, width, valid)  # [BN, W, w]
    if _rows_first(h, w, height, width):
        pasted = tf.matmul(tf.matmul(wy, flat), wx, transpose_b=True)
    else:
        pasted = tf.matmul(wy, tf.matmul(flat, wx, transpose_b=True))
    out = tf.reshape(pasted, tf.stack([shape[0], shape[1], height, width]))
    static = [_static_dim(m, 0), _static_dim(m, 1)]
    static[0] = static[0] if static[0] is not None else _static_dim(b, 0)
    static[1] = static[1] if static[1] is not None else _static_dim(b, 1)
    static += [s if isinstance(s, int) else None for s in (height, width)]
    return tf.ensure_shape(out, static)


# --------------------------------------------------------------------------------------------------
# crop_masks


def _indices_tensor(value):
    dtype = _numeric_dtype(value)
    if dtype is None or not dtype.is_integer:
        name = dtype.name if dtype is not None else type(value).__name__
        raise TypeError(f"`indices` must be integers (the row of `masks` of each roi, -1 for none); got {name}")
    t = tf.cast(tf.convert_to_tensor(value), tf.int32)
    check_rank(t, "indices", 2, "[B, R] (a row of `masks` per roi, -1 for none)")
    return t


def crop_masks(masks, rois, indices, output_size, sampling_ratio=0, aligned=True) -> tf.Tensor:
    """Mask R-CNN's mask targets: RoIAlign of one ground-truth mask per roi, `-> [B, R, ph, pw]`.

    Output `[b, r]` is `roi_align` (spatial scale 1, the given `sampling_ratio` and `aligned`, the
    semantics of `kerasdet.ops.roi_align`) of mask `indices[b, r]` of image `b` over roi `r`; rois whose
    index is negative and padding rois (all -1) give 0. Only the chosen mask of each roi is read, and no
    `[B, R, H, W]` tensor is made: the memory used is about three copies of `masks` (in uint8 for uint8 or
    bool masks, in float32 otherwise) plus the output.

    Args:
        masks: `[B, M, H, W]` ground-truth instance masks, uint8 / bool (0 or 1) or float.
        rois: `[B, R, 4]` boxes `(x1, y1, x2, y2)` in image pixels; rows of -1 are padding.
        indices: int `[B, R]`, the row of `masks` for each roi, -1 (any negative value) for none. Values
            `>= M` raise an InvalidArgumentError when the op runs.
        output_size: `ph` or `(ph, pw)` (28 in Mask R-CNN).
        sampling_ratio: points per bin side; `<= 0` takes `ceil(roi_size / output_size)` per roi
            (Detectron2's mask targets use 0 with `aligned=True`).
        aligned: as in `roi_align` (shift by -0.5 pixel; with False rois are at least 1 pixel).

    Returns:
        float32 `[B, R, ph, pw]` (the fraction of each bin inside the mask for 0 / 1 masks). Works with
        unknown `B`, `M`, `R`, `H`, `W` inside `tf.function`; not XLA-compilable (`crop_and_resize`).

    Example:
        >>> masks = tf.ones([1, 2, 8, 8], tf.uint8)
        >>> crop_masks(masks, [[[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 6.0, 6.0]]], [[1, -1]], 2).numpy()[0, :, 0]
        array([[1., 1.],
               [0., 0.]], dtype=float32)
    """
    ph, pw = output_size_pair(output_size)
    _check_sampling(sampling_ratio, aligned)
    m = _masks_tensor(masks, "masks", keep_uint8=True)
    check_rank(m, "masks", 4, "[B, M, H, W]")
    r = as_float_tensor(rois, "rois")
    check_rank(r, "rois", 3, "[B, R, 4] (x1, y1, x2, y2)")
    check_last_dim(r, "rois", 4, "[B, R, 4] (x1, y1, x2, y2)")
    idx = _indices_tensor(indices)
    _check_same("rois", "B", {"masks": (m, 0), "rois": (r, 0)}, "batch size")
    _check_same("indices", "B", {"rois": (r, 0), "indices": (idx, 0)}, "batch size")
    _check_same("indices", "R", {"rois": (r, 1), "indices": (idx, 1)}, "number of rois")

    shape = tf.shape(m)
    count = shape[1]
    # [B, M, H, W] -> [B * M, H, W, 1]: a reshape, no copy; roi (b, r) reads image b * M + indices[b, r]
    feats = tf.reshape(m, tf.stack([shape[0] * count, shape[2], shape[3], 1]))
    boxes, image = _flatten_rois(r)
    flat_idx = tf.reshape(idx, [-1])
    tf.debugging.assert_less(
        flat_idx, count, message="`indices` must be below the number of masks M (or negative for none)"
    )
    has_mask = flat_idx >= 0
    box_indices = image * count + tf.maximum(flat_idx, 0)
    start_y, start_x, height, width, valid = _geometry(boxes, 1.0, aligned)
    geometry = (start_y, start_x, height, width, tf.logical_and(valid, has_mask))

    def empty():
        return tf.zeros(tf.stack([tf.shape(boxes)[0], ph, pw, 1]), tf.float32)

    # no mask pixel at all (M = 0, or an empty mask size): nothing to read, and crop_and_resize
    # would reject every box index
    pooled = tf.cond(
        tf.size(feats) > 0,
        lambda: _align(feats, box_indices, geometry, ph, pw, sampling_ratio),
        empty,
    )
    out = tf.reshape(pooled, tf.concat([tf.shape(r)[:2], [ph, pw]], 0))
    batch = _static_dim(r, 0) if _static_dim(r, 0) is not None else _static_dim(m, 0)
    rows = _static_dim(r, 1) if _static_dim(r, 1) is not None else _static_dim(idx, 1)
    return tf.ensure_shape(out, [batch, rows, ph, pw])
