"""Generalised IoU box loss."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.losses._common import DetectionLoss, check_same_shape, mean_over_valid
from kerasdet.ops._checks import as_float_tensor
from kerasdet.ops.boxes import giou


@keras.saving.register_keras_serializable(package="kerasdet")
class GIoULoss(DetectionLoss):
    """`1 - GIoU` between matching `xyxy` boxes, one value per box, in [0, 2].

    GIoU is `IoU - |C \\ (A u B)| / |C|` with `C` the smallest box enclosing both
    (`kerasdet.ops.boxes.giou` with `aligned=True`): 0 where the union is empty and where the
    enclosing box has zero area, so zero-area and identical boxes give finite values and finite
    gradients. Boxes with `x2 < x1` or `y2 < y1` have zero area. Computed in float32. Boxes are
    decoded pixel (or any common unit) coordinates `(x1, y1, x2, y2)`; decode regression deltas
    first.

    Ignored boxes: a `y_true` row of all -1 (the padding of DESIGN.md §3) gives 0 and is left out of
    the mean reductions (`"sum_over_batch_size"`, `"mean"`, which average over the other boxes);
    `sample_weight` (e.g. 1 for positive anchors, 0 elsewhere) multiplies the per-box losses.

    Reference: H. Rezatofighi, N. Tsoi, J. Gwak, A. Sadeghian, I. Reid, S. Savarese, "Generalized
    Intersection over Union: A Metric and A Loss for Bounding Box Regression", CVPR 2019.

    Args:
        reduction: a Keras reduction (`"sum_over_batch_size"` default, `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or None for per-box losses).
        name: loss name.
        dtype: Keras loss dtype; the computation is float32 regardless.

    Call arguments:
        y_true: `[..., 4]` target boxes, xyxy; rows of -1 are padding.
        y_pred: `[..., 4]` predicted boxes, xyxy.
        sample_weight: optional weights broadcastable to `[...]`.

    Returns:
        The reduced float32 loss, or `[...]` per-box losses with `reduction=None`.

    Example:
        >>> loss = GIoULoss(reduction=None)
        >>> loss([[0., 0., 10., 10.], [0., 0., 10., 10.]], [[0., 0., 10., 10.], [20., 0., 30., 10.]]).numpy()
        array([0.       , 1.3333334], dtype=float32)
    """

    def __init__(self, reduction="sum_over_batch_size", name="giou_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        y_true = as_float_tensor(y_true, "y_true")
        y_pred = as_float_tensor(y_pred, "y_pred")
        check_same_shape(y_true, y_pred, last_dim=4, hint="[..., 4] (x1, y1, x2, y2)")
        padding = tf.reduce_all(tf.equal(y_true, -1.0), axis=-1)
        loss = 1.0 - giou(y_true, y_pred, aligned=True)
        return mean_over_valid(loss, tf.logical_not(padding), self.reduction)

