"""Slow numpy references for the dense detection losses, written from their papers' definitions.

One scalar at a time, float64: these are the spec the vectorised losses are checked against.
"""

import math

import numpy as np

from tests.reference.boxes import giou_pair, iou_pair


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


def yolo_v2_region_loss(predictions, gt_boxes, gt_labels, anchors, stride, image_hw, ignore_threshold=0.6,
                        object_scale=5.0, noobject_scale=1.0, class_scale=1.0, coord_scale=1.0, prior_scale=0.0):
    """YOLOv2's loss as darknet's region layer computes it, one prediction at a time (float64).

    `predictions` [B, H, W, A, 5 + C] raw outputs (t_x, t_y, t_w, t_h, t_o, class logits); `anchors` [A, 2] in grid
    units of `stride`; `gt_boxes` [B, M, 4] xyxy pixels, `gt_labels` [B, M] (-1 padding); `image_hw` the padded
    image size. An object belongs to the anchor of best shape IoU in the cell of its centre (a later object
    replaces an earlier one there). Returns the five terms (coord, object, noobject, class, prior) summed over
    predictions and divided by B; `prior_scale` 0 leaves out the prior pull (after 12,800 images)."""
    b_count, height, width, num_anchors, _ = predictions.shape
    height_px, width_px = image_hw
    coord = obj = noobj = cls = prior = 0.0
    for b in range(b_count):
        truths = [(m, gt_boxes[b, m]) for m in range(gt_boxes.shape[1]) if gt_labels[b, m] >= 0]
        owner = {}
        for m, box in truths:
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            col = min(max(int(math.floor(cx / stride)), 0), width - 1)
            row = min(max(int(math.floor(cy / stride)), 0), height - 1)
            w, h = box[2] - box[0], box[3] - box[1]
            best, best_a = -1.0, 0
            for a in range(num_anchors):
                pw, ph = anchors[a][0] * stride, anchors[a][1] * stride
                inter = min(w, pw) * min(h, ph)
                shape_iou = inter / (w * h + pw * ph - inter)
                if shape_iou > best:
                    best, best_a = shape_iou, a
            owner[(row, col, best_a)] = m
        for row in range(height):
            for col in range(width):
                for a in range(num_anchors):
                    t = [float(v) for v in predictions[b, row, col, a]]
                    sx, sy, so = _sigmoid(t[0]), _sigmoid(t[1]), _sigmoid(t[4])
                    pw, ph = anchors[a][0] * stride, anchors[a][1] * stride
                    bx, by = (col + sx) * stride, (row + sy) * stride
                    bw, bh = pw * math.exp(t[2]), ph * math.exp(t[3])
                    pred = (bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2)
                    if (row, col, a) in owner:
                        m = owner[(row, col, a)]
                        box = gt_boxes[b, m]
                        w, h = box[2] - box[0], box[3] - box[1]
                        tx = (box[0] + box[2]) / 2 / stride - col
                        ty = (box[1] + box[3]) / 2 / stride - row
                        scale = coord_scale * (2.0 - w * h / (height_px * width_px))
                        coord += scale * ((sx - tx) ** 2 + (sy - ty) ** 2 + (t[2] - math.log(w / pw)) ** 2
                                          + (t[3] - math.log(h / ph)) ** 2)
                        obj += object_scale * (so - iou_pair(pred, box)) ** 2
                        logits = np.array(t[5:], np.float64)
                        log_z = logits.max() + math.log(np.exp(logits - logits.max()).sum())
                        cls += class_scale * (log_z - logits[int(gt_labels[b, m])])
                    else:
                        best_iou = max([iou_pair(pred, box) for _, box in truths], default=0.0)
                        if best_iou <= ignore_threshold:
                            noobj += noobject_scale * so ** 2
                        prior += prior_scale * ((sx - 0.5) ** 2 + (sy - 0.5) ** 2 + t[2] ** 2 + t[3] ** 2)
    return tuple(v / b_count for v in (coord, obj, noobj, cls, prior))


def yolo_v1_loss(predictions, gt_boxes, gt_labels, grid, boxes_per_cell, image_hw, lambda_coord=5.0,
                 lambda_noobj=0.5):
    """YOLO's eq. 3 one cell and one predictor at a time (float64). `predictions` [B, S*S, 5 nb + C] raw outputs
    (per predictor x, y, sqrt w, sqrt h, confidence; then the C class probabilities); an object belongs to the cell
    of its centre (a later object replaces an earlier one there) and to the predictor of highest IoU with it.
    Returns (coord, object, noobject, class) divided by B."""
    b_count = predictions.shape[0]
    height, width = image_hw
    s, nb = grid, boxes_per_cell
    coord = obj = noobj = cls = 0.0
    for b in range(b_count):
        owner = {}
        for m in range(gt_boxes.shape[1]):
            if gt_labels[b, m] < 0:
                continue
            box = gt_boxes[b, m]
            col = min(max(int(math.floor((box[0] + box[2]) / 2 / width * s)), 0), s - 1)
            row = min(max(int(math.floor((box[1] + box[3]) / 2 / height * s)), 0), s - 1)
            owner[row * s + col] = m
        for c in range(s * s):
            row, col = divmod(c, s)
            p = [float(v) for v in predictions[b, c]]
            preds = []
            for j in range(nb):
                x, y, sw, sh, conf = p[5 * j:5 * j + 5]
                cx, cy = (col + x) / s * width, (row + y) / s * height
                w, h = max(sw, 0.0) ** 2 * width, max(sh, 0.0) ** 2 * height
                preds.append(((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), conf, (x, y, sw, sh)))
            if c not in owner:
                noobj += lambda_noobj * sum(conf ** 2 for _, conf, _ in preds)
                continue
            box = gt_boxes[b, owner[c]]
            ious = [iou_pair(pbox, box) for pbox, _, _ in preds]
            best = int(np.argmax(ious))
            tx = (box[0] + box[2]) / 2 / width * s - col
            ty = (box[1] + box[3]) / 2 / height * s - row
            tw, th = math.sqrt((box[2] - box[0]) / width), math.sqrt((box[3] - box[1]) / height)
            for j, (_, conf, (x, y, sw, sh)) in enumerate(preds):
                if j == best:
                    coord += lambda_coord * ((x - tx) ** 2 + (y - ty) ** 2 + (sw - tw) ** 2 + (sh - th) ** 2)
                    obj += (conf - ious[j]) ** 2
                else:
                    noobj += lambda_noobj * conf ** 2
            probs = np.array(p[5 * nb:], np.float64)     # the class probabilities are the outputs themselves
            target = np.zeros_like(probs)
            target[int(gt_labels[b, owner[c]])] = 1.0
            cls += float(((probs - target) ** 2).sum())
    return tuple(v / b_count for v in (coord, obj, noobj, cls))
