"""Smooth L1 (Huber-like) box regression loss."""

from __future__ import annotations

import keras
import tensorflow as tf

from kerasdet.losses._common import DetectionLoss, check_number, check_same_shape
from kerasdet.ops._checks import as_float_tensor

#: Detectron (v1) RetinaNet's and Faster R-CNN's RPN beta (sigma = 3 in the Caffe code).
DEFAULT_BETA = 1.0 / 9.0


@keras.saving.register_keras_serializable(package="kerasdet")
class SmoothL1Loss(DetectionLoss):
    """Smooth L1 loss on box regression targets, summed over the last (coordinate) axis.

    Per coordinate, with `d = y_pred - y_true`: `0.5 d^2 / beta` where `|d| < beta`, else
    `|d| - 0.5 beta`; `beta = 0` gives the L1 loss. The per-box loss is the sum over the last axis
    (the 4 encoded deltas). Equals `keras.losses.Huber(delta=beta)` divided by `beta`, summed rather
    than averaged over the last axis. Computed in float32.

    Choice of `beta`: 1/9 (default) as Detectron's RetinaNet and the Faster R-CNN RPN (the Caffe
    code's `sigma = 3`, `beta = 1 / sigma^2`); 1.0 as the Fast R-CNN paper's definition and its box
    head (`sigma = 1`); Detectron2's RetinaNet uses 0.1, torchvision's 1/9 (or plain L1).

    Ignored boxes: box targets have no sentinel value (-1 is a valid delta), so pass
    `sample_weight` (1 for anchors matched to an object, 0 elsewhere) to restrict the loss to the
    positive anchors. With `reduction="sum"` divide by the number of positives as the papers do, or use
    `"mean_with_sample_weight"`, which divides the weighted sum by the sum of the weights.

    Reference: R. Girshick, "Fast R-CNN", ICCV 2015, eq. (3).

    Args:
        beta: the transition point >= 0 between the quadratic and linear parts. Default 1/9.
        reduction: a Keras reduction (`"sum_over_batch_size"` default, `"sum"`, `"mean"`,
            `"mean_with_sample_weight"`, `"none"` or None for per-box losses).
        name: loss name.
        dtype: Keras loss dtype; the computation is float32 regardless.

    Call arguments:
        y_true: `[..., 4]` (any last size) regression targets.
        y_pred: the predictions, same shape.
        sample_weight: optional weights broadcastable to `[...]`.

    Returns:
        The reduced float32 loss, or `[...]` per-box losses with `reduction=None`.

    Example:
        >>> loss = SmoothL1Loss(beta=1.0, reduction="sum")
        >>> float(loss([[0., 0., 0., 0.]], [[0.5, -2., 0., 0.]]))
        1.625
    """

    def __init__(self, beta=DEFAULT_BETA, reduction="sum_over_batch_size", name="smooth_l1_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.beta = check_number(beta, "beta", 0.0)

    def call(self, y_true, y_pred):
        y_true = as_float_tensor(y_true, "y_true")
        y_pred = as_float_tensor(y_pred, "y_pred")
        check_same_shape(y_true, y_pred, hint="[..., 4]")
        diff = tf.abs(y_pred - y_true)
        if self.beta == 0.0:
            loss = diff
        else:
            quadratic = tf.minimum(diff, self.beta)  # where |d| < beta this is |d|, and the linear part is 0
            loss = 0.5 * quadratic * quadratic / self.beta + (diff - quadratic)
        return tf.reduce_sum(loss, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["beta"] = self.beta
        return config
