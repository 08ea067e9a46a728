"""Slow numpy references for the dense detection losses, written from their papers' definitions.

One scalar at a time, float64: these are the spec the vectorised losses are checked against.
"""

import math

import numpy as np

from tests.reference.boxes import giou_pair


def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def focal_element(y, logit, alpha, gamma):
    """Lin et al. 2017, eq. (5), for one class of one anchor, target y in [0, 1]."""
    p = _sigmoid(logit)
    # -[y log p + (1 - y) log(1 - p)] with log p = -log(1 + e^-x) and log(1 - p) = -log(1 + e^x)
    log_p = -math.log1p(math.exp(-logit)) if logit > -30 else logit
    log_1mp = -math.log1p(math.exp(logit)) if logit < 30 else -logit
    ce = -(y * log_p + (1.0 - y) * log_1mp)
    p_t = y * p + (1.0 - y) * (1.0 - p)
    weight = 1.0 if alpha is None else alpha * y + (1.0 - alpha) * (1.0 - y)
    return weight * (1.0 - p_t) ** gamma * ce


def focal_per_anchor(y_true, logits, alpha=0.25, gamma=2.0):
    """`[..., K]` targets (negative = ignored) -> `[...]` sums over the classes, and the valid mask."""
    y_true = np.asarray(y_true, np.float64)
    logits = np.asarray(logits, np.float64)
    flat_t = y_true.reshape(-1, y_true.shape[-1])
    flat_x = logits.reshape(-1, logits.shape[-1])
    out = np.zeros(flat_t.shape[0])
    valid = np.zeros(flat_t.shape[0], bool)
    for a in range(flat_t.shape[0]):
        for k in range(flat_t.shape[1]):
            if flat_t[a, k] < 0:
                continue
            valid[a] = True
            out[a] += focal_element(flat_t[a, k], flat_x[a, k], alpha, gamma)
    return out.reshape(y_true.shape[:-1]), valid.reshape(y_true.shape[:-1])


def smooth_l1_per_box(y_true, y_pred, beta):
    """Fast R-CNN eq. (3) with a transition point `beta`, summed over the last axis."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    flat_t = y_true.reshape(-1, y_true.shape[-1])
    flat_p = y_pred.reshape(-1, y_pred.shape[-1])
    out = np.zeros(flat_t.shape[0])
    for i in range(flat_t.shape[0]):
        for j in range(flat_t.shape[1]):
            d = abs(flat_p[i, j] - flat_t[i, j])
            out[i] += 0.5 * d * d / beta if d < beta else d - 0.5 * beta
    return out.reshape(y_true.shape[:-1])


def giou_loss_per_box(y_true, y_pred):
    """1 - GIoU per box pair; rows of y_true all -1 are padding (loss 0, not valid)."""
    y_true = np.asarray(y_true, np.float64)
    y_pred = np.asarray(y_pred, np.float64)
    flat_t = y_true.reshape(-1, 4)
    flat_p = y_pred.reshape(-1, 4)
    out = np.zeros(flat_t.shape[0])
    valid = np.zeros(flat_t.shape[0], bool)
    for i in range(flat_t.shape[0]):
        if np.all(flat_t[i] == -1):
            continue
        valid[i] = True
        out[i] = 1.0 - giou_pair(list(flat_t[i]), list(flat_p[i]))
    return out.reshape(y_true.shape[:-1]), valid.reshape(y_true.shape[:-1])


def reduce(per_item, valid, sample_weight, reduction):
    """The Keras reductions with ignored items left out of the mean's count."""
    weighted = per_item * (1.0 if sample_weight is None else np.broadcast_to(sample_weight, per_item.shape))
    weighted = np.where(valid, weighted, 0.0)
    if reduction in (None, "none"):
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean_with_sample_weight":
        sw = np.ones_like(per_item) if sample_weight is None else np.broadcast_to(sample_weight, per_item.shape)
        return weighted.sum() / sw.sum()
    count = valid.sum()
    return weighted.sum() / count if count else 0.0
