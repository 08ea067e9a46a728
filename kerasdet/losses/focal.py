"""Sigmoid focal loss (RetinaNet)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from kerasdet.losses._common import (
    DetectionLoss,
    as_float32,
    check_bool,
    check_number,
    check_same_shape,
    mean_over_valid,
)

_EPSILON = 1e-7  # probabilities are clipped to [eps, 1 - eps] when from_logits=False
_TINY = 1e-30  # floor of (1 - p_t) under the power: keeps the gradient finite for gamma < 1


@keras.saving.register_keras_serializable(package="kerasdet")
class FocalLoss(DetectionLoss):
    """Sigmoid focal loss, summed over the classes of each anchor.

    For every class `k` of every anchor, with `p = sigmoid(y_pred)` and target `y` in [0, 1]:
    `FL = -alpha_t (1 - p_t)^gamma [y log p + (1 - y) log(1 - p)]`, where
    `p_t = y p + (1 - y)(1 - p)` and `alpha_t = alpha y + (1 - alpha)(1 - y)`. The per-anchor loss is
    the sum of `FL` over the last (class) axis. Computed in float32 from the logits with the stable
    form `max(x, 0) - x y + log(1 + exp(-|x|))` of the cross-entropy; gradients stay finite for
    saturated logits (p = 0 or 1 in float32) and any `gamma >= 0`.

    Ignored entries: targets `< 0` (e.g. a row of -1 for an anchor whose IoU falls between the
    background and foreground thresholds) contribute 0 and no gradient. An anchor whose targets are
    all negative is ignored: the mean reductions (`"sum_over_batch_size"`, `"mean"`) average over the
    anchors with at least one target >= 0. `sample_weight` (broadcastable to `y_pred.shape[:-1]`)
    multiplies the per-anchor losses as usual.

    Normalisation: the paper divides the sum over all anchors by the number of anchors assigned to a
    ground-truth box. Use `reduction="sum"` and divide by that count (a `"mean"` over anchors would
    shrink the loss by the ratio of all anchors to positive ones).

    Relation to Keras: equal to `K * keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True,
    alpha=alpha, gamma=gamma, from_logits=from_logits, reduction=...)` (which averages over the class
    axis instead of summing) on inputs without ignored entries.

    Reference: T.-Y. Lin, P. Goyal, R. Girshick, K. He, P. Dollár, "Focal Loss for Dense Object
    Detection", ICCV 2017, eq. (5).

    Args:
        alpha: weight of the positive targets in [0, 1] (negatives get `1 - alpha`); None for no
            weighting. Default 0.25.
        gamma: focusing parameter >= 0; 0 gives the (alpha-weighted) binary cross-entropy. Default 2.
        from_logits: True (default) when `y_pred` holds logits; False when it holds probabilities
            (clipped to `[1e-7, 1 - 1e-7]`).
        reduction: a Keras reduction: `"sum_over_batch_size"` (default; mean over the non-ignored
            anchors), `"sum"`, `"mean"` (same as the default), `"mean_with_sample_weight"`, `"none"`
            or None (per-anchor losses).
        name: loss name.
        dtype: Keras loss dtype (the inputs' conversion dtype); the computation is float32 regardless.

    Call arguments:
        y_true: `[..., K]` targets in [0, 1] (one-hot rows; all zeros for background), negative to ignore.
        y_pred: `[..., K]` logits (or probabilities).
        sample_weight: optional weights broadcastable to `[...]`.

    Returns:
        The reduced float32 loss, or `[...]` per-anchor losses with `reduction=None`.

    Example:
        >>> loss = FocalLoss(reduction="sum")
        >>> y_true = tf.constant([[[0., 1.], [0., 0.], [-1., -1.]]])      # positive, background, ignored
        >>> logits = tf.constant([[[-2., 1.], [-3., -1.], [5., 5.]]])
        >>> num_positives = 1.0
        >>> float(loss(y_true, logits) / num_positives)  # doctest: +ELLIPSIS
        0.024...
    """

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        from_logits=True,
        reduction="sum_over_batch_size",
        name="focal_loss",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.alpha = check_number(alpha, "alpha", 0.0, 1.0, allow_none=True)
        self.gamma = check_number(gamma, "gamma", 0.0)
        self.from_logits = check_bool(from_logits, "from_logits")

    def call(self, y_true, y_pred):
        y_true = as_float32(y_true, "y_true")
        y_pred = as_float32(y_pred, "y_pred")
        check_same_shape(y_true, y_pred, hint="[..., num_classes]")
        self._check_targets(y_true)
        ignored = y_true < 0.0
        y = tf.where(ignored, 0.0, y_true)
        if self.from_logits:
            x = y_pred
            cross_entropy = tf.maximum(x, 0.0) - x * y + tf.math.log1p(tf.exp(-tf.abs(x)))
            p, one_minus_p = tf.sigmoid(x), tf.sigmoid(-x)
        else:
            p = tf.clip_by_value(y_pred, _EPSILON, 1.0 - _EPSILON)
            one_minus_p = 1.0 - p
            cross_entropy = -(y * tf.math.log(p) + (1.0 - y) * tf.math.log(one_minus_p))
        loss = cross_entropy
        if self.gamma > 0.0:
            one_minus_pt = y * one_minus_p + (1.0 - y) * p
            loss = loss * tf.pow(tf.maximum(one_minus_pt, _TINY), self.gamma)
        if self.alpha is not None:
            loss = loss * (self.alpha * y + (1.0 - self.alpha) * (1.0 - y))
        loss = tf.reduce_sum(tf.where(ignored, 0.0, loss), axis=-1)
        valid = tf.reduce_any(tf.logical_not(ignored), axis=-1)
        return mean_over_valid(loss, valid, self.reduction)

    def _check_targets(self, y_true):
        if not tf.executing_eagerly():
            return
        values = np.asarray(y_true)
        if (values > 1.0).any():
            raise ValueError(
                f"`y_true` must hold targets in [0, 1] (negative to ignore); got values up to {values.max()}"
            )

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma, "from_logits": self.from_logits})
        return config
