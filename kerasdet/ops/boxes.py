"""Box arithmetic in continuous coordinates (DESIGN.md §4): area, IoU, GIoU, clipping, format conversion.

Boxes are `[..., 4]` tensors, `xyxy` pixels unless a function says otherwise. A box with `x2 <= x1` or
`y2 <= y1` has zero area; its IoU with anything is 0 (also when the union is 0). A box with a NaN or inf
coordinate is no box: its area is 0, its IoU with anything 0 and its GIoU -1 (the lowest GIoU there is), with
zero gradients, so that no NaN leaves these functions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras.utils import bounding_boxes as _keras_boxes

from kerasdet.ops._checks import as_float_tensor, check_last_dim

_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw", "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh")


def _boxes(value, name):
    t = as_float_tensor(value, name)
    check_last_dim(t, name, 4, "[..., 4] (x1, y1, x2, y2)")
    return t


def area(boxes) -> tf.Tensor:
    """Area of `xyxy` boxes `[..., 4]` -> `[...]`; inverted, degenerate and non-finite boxes have area 0.

    Example:
        >>> area([[0., 0., 10., 5.]]).numpy()
        array([50.], dtype=float32)
    """
    b, _ = _finite_boxes(_boxes(boxes, "boxes"))
    return _area(b)


def _area(b):
    x1, y1, x2, y2 = tf.unstack(b, 4, axis=-1)
    return tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)


def _finite_boxes(b):
    """(`b` with every box that has a NaN or inf coordinate replaced by zeros, bool `[...]` which boxes are finite).
    The zeros are a degenerate box, and keep NaN out of values and gradients (a `tf.where` alone would not)."""
    finite = tf.reduce_all(tf.math.is_finite(b), axis=-1)
    return tf.where(finite[..., None], b, 0.0), finite


def padding_rows(boxes: tf.Tensor) -> tf.Tensor:
    """Bool `[...]`: True for the rows of a float `[..., 4]` tensor that are all -1, the padding of
    padded box sets (proposals, rois, anchors). No conversion or check: pass a tensor.
    """
    return tf.reduce_all(tf.equal(boxes, -1.0), axis=-1)


def _check_aligned(aligned):
    if not isinstance(aligned, (bool, np.bool_)):
        raise TypeError(f"`aligned` must be a bool; got {aligned!r}")


def _intersection_union(b1, b2, aligned):
    """(intersection, union, the boxes as paired, whether both boxes of each pair are finite); non-finite boxes
    enter as zeros (see `_finite_boxes`)."""
    _check_aligned(aligned)
    b1, finite1 = _finite_boxes(b1)
    b2, finite2 = _finite_boxes(b2)
    finite = tf.logical_and(finite1, finite2) if aligned else tf.logical_and(finite1[..., :, None], finite2[..., None, :])
    if aligned:
        a1, a2 = b1, b2
    else:
        a1, a2 = b1[..., :, None, :], b2[..., None, :, :]
    x1 = tf.maximum(a1[..., 0], a2[..., 0])
    y1 = tf.maximum(a1[..., 1], a2[..., 1])
    x2 = tf.minimum(a1[..., 2], a2[..., 2])
    y2 = tf.minimum(a1[..., 3], a2[..., 3])
    inter = tf.maximum(x2 - x1, 0.0) * tf.maximum(y2 - y1, 0.0)
    ar1 = _area(b1)
    ar2 = _area(b2)
    if not aligned:
        ar1, ar2 = ar1[..., :, None], ar2[..., None, :]
    union = ar1 + ar2 - inter
    return inter, union, (a1, a2), finite


def _safe_divide(num, den):
    return tf.where(den > 0.0, num / tf.where(den > 0.0, den, 1.0), 0.0)


def iou(boxes1, boxes2, aligned: bool = False) -> tf.Tensor:
    """Intersection over union of `xyxy` boxes.

    Args:
        boxes1: `[..., N, 4]`.
        boxes2: `[..., M, 4]` with the same leading dimensions.
        aligned: if True, `N == M` and the result is elementwise `[..., N]`.

    Returns:
        `[..., N, M]` pairwise IoU (or `[..., N]` when aligned); 0 where the union is 0.

    Example:
        >>> iou([[0., 0., 10., 10.]], [[5., 0., 15., 10.], [20., 20., 30., 30.]]).numpy()
        array([[0.33333334, 0.        ]], dtype=float32)
    """
    b1 = _boxes(boxes1, "boxes1")
    b2 = _boxes(boxes2, "boxes2")
    inter, union, _, _ = _intersection_union(b1, b2, aligned)
    return _safe_divide(inter, union)  # a non-finite box entered as zeros: IoU 0


def giou(boxes1, boxes2, aligned: bool = False) -> tf.Tensor:
    """Generalised IoU (Rezatofighi et al., 2019): IoU - (|C| - |A u B|) / |C|, C the enclosing box.

    Same shapes as `iou`. Where the enclosing box has zero area the result is 0; a pair with a non-finite box
    gives -1.

    Example:
        >>> giou([[0., 0., 10., 10.]], [[20., 0., 30., 10.]]).numpy()
        array([[-0.33333334]], dtype=float32)
    """
    b1 = _boxes(boxes1, "boxes1")
    b2 = _boxes(boxes2, "boxes2")
    inter, union, (a1, a2), finite = _intersection_union(b1, b2, aligned)
    iou_value = _safe_divide(inter, union)
    cx1 = tf.minimum(a1[..., 0], a2[..., 0])
    cy1 = tf.minimum(a1[..., 1], a2[..., 1])
    cx2 = tf.maximum(a1[..., 2], a2[..., 2])
    cy2 = tf.maximum(a1[..., 3], a2[..., 3])
    enclosing = tf.maximum(cx2 - cx1, 0.0) * tf.maximum(cy2 - cy1, 0.0)
    return tf.where(finite, iou_value - _safe_divide(enclosing - union, enclosing), -1.0)


def _check_sizes(sizes, name, allow_zero):
    """Eagerly known image sizes must be finite and positive (>= 0 where `allow_zero`): a negative or NaN size
    has no meaning and would give NaN or inverted boxes. (Inside graphs the values are not known: no check.)"""
    if not tf.executing_eagerly() or isinstance(sizes, tf.Variable):
        return
    values = np.asarray(sizes)
    bad = ~np.isfinite(values) | ((values < 0) if allow_zero else (values <= 0))
    if bad.any():
        raise ValueError(f"`{name}` must be finite and {'>= 0' if allow_zero else '> 0'}; got {values.tolist()}")


def clip_boxes(boxes, image_shape) -> tf.Tensor:
    """Clips `xyxy` boxes `[..., 4]` to `[0, width] x [0, height]`.

    Args:
        boxes: `[..., 4]` pixels.
        image_shape: `(height, width)`, or a tensor `[..., 2]` broadcastable against the boxes' leading dims.

    Example:
        >>> clip_boxes([[-5., 2., 120., 40.]], (32, 100)).numpy()
        array([[  0.,   2., 100.,  32.]], dtype=float32)
    """
    b = _boxes(boxes, "boxes")
    shape = as_float_tensor(image_shape, "image_shape")
    if shape.shape.rank is not None and shape.shape.rank >= 1 and shape.shape[-1] not in (None, 2):
        raise ValueError(f"`image_shape` must be (height, width) or [..., 2]; got shape {tuple(shape.shape)}")
    _check_sizes(shape, "image_shape", allow_zero=True)
    h = shape[..., 0:1]
    w = shape[..., 1:2]
    x1, y1, x2, y2 = tf.split(b, 4, axis=-1)
    x1 = tf.clip_by_value(x1, 0.0, w)
    x2 = tf.clip_by_value(x2, 0.0, w)
    y1 = tf.clip_by_value(y1, 0.0, h)
    y2 = tf.clip_by_value(y2, 0.0, h)
    return tf.concat([x1, y1, x2, y2], axis=-1)


def convert_format(boxes, source: str, target: str, height=None, width=None) -> tf.Tensor:
    """Converts boxes between Keras' formats (`xyxy`, `xywh`, `center_xywh`, `yxyx`, `rel_*`...).

    A thin checked wrapper over `keras.utils.bounding_boxes.convert_format`; relative formats need
    `height` and `width`.

    Example:
        >>> convert_format([[10., 20., 30., 40.]], "xyxy", "center_xywh").numpy()
        array([[20., 30., 20., 20.]], dtype=float32)
    """
    for arg, value in (("source", source), ("target", target)):
        if value not in _FORMATS:
            raise ValueError(f"`{arg}` must be one of {_FORMATS}; got {value!r}")
    b = _boxes(boxes, "boxes")
    if (source.startswith("rel") or target.startswith("rel")) and (height is None or width is None):
        raise ValueError(f"converting {source!r} to {target!r} needs `height` and `width`")
    if source.startswith("rel") or target.startswith("rel"):
        for name, value in (("height", height), ("width", width)):
            _check_sizes(as_float_tensor(value, name), name, allow_zero=False)
    return tf.convert_to_tensor(_keras_boxes.convert_format(b, source=source, target=target, height=height, width=width))
