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


def ssd_multibox_loss(anchors, gt_boxes, gt_labels, logits, deltas, neg_pos_ratio=3.0, threshold=0.5):
    """SSD's loss (Liu et al., 2016, eq. 1-3 and §2.2), one anchor at a time: default boxes matched at IoU >=
    `threshold` plus each object's best box, matched to that object; softmax cross-entropy over background (0) and the classes (label
    + 1) on the positives and on the `floor(ratio * P)` negatives of highest loss per image (every negative when
    `neg_pos_ratio` is None); smooth L1 (beta 1) on the positives' offsets with variances 0.1 / 0.2; both terms
    divided by the number of positives in the batch (at least 1). Returns (class_loss, box_loss)."""
    from tests.reference.boxes import delta_encode
    from tests.reference.matching import match
    from tests.reference.sampling import hard_negatives

    indices, states, _ = match(anchors, gt_boxes, gt_labels, (threshold,), (0, 1), low_quality=False, force_best=True)
    logits = np.asarray(logits, np.float64)
    batch, num, _ = logits.shape
    ce = np.zeros((batch, num))
    for b in range(batch):
        for i in range(num):
            target = gt_labels[b][indices[b, i]] + 1 if states[b, i] == 1 else 0
            row = logits[b, i]
            top = row.max()
            ce[b, i] = top + math.log(sum(math.exp(v - top) for v in row)) - row[target]
    if neg_pos_ratio is None:
        negatives = (states == 0).astype(np.float64)
    else:
        negatives = hard_negatives(ce, states, neg_pos_ratio, 0)
    positive = (states == 1).astype(np.float64)
    n = max(positive.sum(), 1.0)
    class_loss = float((ce * (positive + negatives)).sum() / n)
    box_loss = 0.0
    for b in range(batch):
        for i in range(num):
            if states[b, i] == 1:
                target = delta_encode(anchors[i], gt_boxes[b][indices[b, i]], (10.0, 10.0, 5.0, 5.0))
                box_loss += float(smooth_l1_per_box([target], [deltas[b, i]], 1.0)[0])
    return class_loss, box_loss / n
