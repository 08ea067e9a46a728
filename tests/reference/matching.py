"""Slow numpy reference for IoU matching (Faster R-CNN / Detectron2 `Matcher`, SSD), one pair at a time.

IoU is computed in float32 with the formula of DESIGN.md §4 (inter / (area1 + area2 - inter)), so that
exact ties (Detectron2's rule keeps all anchors tied at a box's best IoU) are the same as in float32 TF.
"""

import numpy as np

POSITIVE, NEGATIVE, IGNORE = 1, 0, -1


def iou32(a, b):
    f = np.float32
    a = [f(v) for v in a]
    b = [f(v) for v in b]

    def area(box):
        return max(box[2] - box[0], f(0)) * max(box[3] - box[1], f(0))

    iw = max(min(a[2], b[2]) - max(a[0], b[0]), f(0))
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), f(0))
    inter = iw * ih
    union = area(a) + area(b) - inter
    return f(inter / union) if union > 0 else f(0)


def match_image(anchors, gt_boxes, gt_labels, thresholds, values, low_quality, force_best):
    """One image: returns (indices [A], states [A], ious [A]) as lists."""
    valid = [j for j in range(len(gt_boxes)) if gt_labels[j] >= 0]
    table = {(i, j): iou32(anchors[i], gt_boxes[j]) for i in range(len(anchors)) for j in valid}
    idx, states, ious = [], [], []
    for i in range(len(anchors)):
        if valid:
            best_j = valid[0]
            for j in valid:
                if table[i, j] > table[i, best_j]:
                    best_j = j
            best = float(table[i, best_j])
        else:
            best_j, best = -1, 0.0
        state = values[0]
        for t, v in zip(thresholds, values[1:]):
            if best >= np.float32(t):
                state = v
        idx.append(best_j)
        states.append(state)
        ious.append(best)
    for j in valid:
        if not anchors.shape[0]:
            break
        gt_best = max(table[i, j] for i in range(len(anchors)))
        if gt_best <= 0:
            continue
        if low_quality:
            for i in range(len(anchors)):
                if table[i, j] == gt_best:
                    states[i] = POSITIVE
        if force_best:
            i = min(i for i in range(len(anchors)) if table[i, j] == gt_best)
            states[i] = POSITIVE
            idx[i] = j  # later boxes overwrite earlier ones
            ious[i] = float(table[i, j])
    for i in range(len(anchors)):
        if all(float(v) == -1.0 for v in anchors[i]):
            idx[i], states[i], ious[i] = -1, IGNORE, 0.0
    return idx, states, ious


def match(anchors, gt_boxes, gt_labels, thresholds, values, low_quality=True, force_best=False):
    """anchors [A, 4] or [B, A, 4]; returns int [B, A], int [B, A], float [B, A]."""
    anchors = np.asarray(anchors)
    out = [[], [], []]
    for b in range(len(gt_boxes)):
        a = anchors[b] if anchors.ndim == 3 else anchors
        for k, v in enumerate(match_image(a, gt_boxes[b], gt_labels[b], thresholds, values, low_quality, force_best)):
            out[k].append(v)
    num_anchors = anchors.shape[-2]
    shape = (len(gt_boxes), num_anchors)
    return (
        np.asarray(out[0], np.int64).reshape(shape),
        np.asarray(out[1], np.int64).reshape(shape),
        np.asarray(out[2], np.float64).reshape(shape),
    )
