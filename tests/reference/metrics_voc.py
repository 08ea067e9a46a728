"""Slow reference of the PASCAL VOC devkit's detection AP (VOCevaldet.m + VOCap.m), plain loops.

Written from the devkit's definition (Everingham et al., "The PASCAL Visual Object Classes (VOC)
Challenge", IJCV 2010, and the VOC2007/VOC2012 devkit code's documented behaviour):

- per class, detections are sorted by confidence, descending (a stable sort: ties keep image order, then
  the order within the image);
- each detection is compared with every ground truth of its class in its image; only boxes that overlap
  (intersection width and height > 0) count; it takes the first ground truth with the largest overlap
  (IoU), already matched or not, difficult or not;
- overlap >= threshold: difficult -> neither TP nor FP; not yet detected -> TP (and marked detected);
  already detected -> FP (duplicate). Otherwise FP;
- recall = cumTP / number of non-difficult ground truths; precision = cumTP / (cumTP + cumFP);
- AP (VOC2010+, "all points"): area under the precision envelope (precision made monotonically
  decreasing), summed where recall changes; AP (VOC2007, 11 points): mean over t in 0, 0.1, ..., 1 of the
  largest precision at recall >= t (0 if none).

Boxes are (x1, y1, x2, y2). `legacy_plus_one=True` uses the devkit's pixel-inclusive sizes (x2 - x1 + 1),
otherwise continuous sizes (x2 - x1).
"""

from __future__ import annotations

import math


def voc_ap_reference(rec: list, prec: list, use_07_metric: bool) -> float:
    if use_07_metric:
        ap = 0.0
        for i in range(11):
            t = i * 0.1
            ps = [p for r, p in zip(rec, prec) if r >= t]
            ap += (max(ps) if ps else 0.0) / 11.0
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def _overlap(a, b, plus):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + plus
    ih = min(a[3], b[3]) - max(a[1], b[1]) + plus
    if iw > 0 and ih > 0:
        ua = (a[2] - a[0] + plus) * (a[3] - a[1] + plus) + (b[2] - b[0] + plus) * (b[3] - b[1] + plus) - iw * ih
        return iw * ih / ua
    return None


def voc_eval_class_reference(gts, dets, label, iou_threshold=0.5, use_07_metric=False, legacy_plus_one=False):
    """AP of one class: (ap or None without non-difficult gt, recall list, precision list).

    Args:
        gts: per image list of (boxes, labels, difficult) lists.
        dets: per image list of (boxes, scores, labels) lists.
    """
    plus = 1.0 if legacy_plus_one else 0.0
    class_gt = []
    npos = 0
    for boxes, labels, difficult in gts:
        rec = [(list(b), bool(d)) for b, l, d in zip(boxes, labels, difficult) if l == label]
        npos += sum(1 for _, d in rec if not d)
        class_gt.append({"boxes": [b for b, _ in rec], "difficult": [d for _, d in rec], "det": [False] * len(rec)})
    flat = []
    for i, (boxes, scores, labels) in enumerate(dets):
        for j, (b, s, l) in enumerate(zip(boxes, scores, labels)):
            if l == label:
                flat.append((-float(s), i, j, list(b)))
    flat.sort(key=lambda x: (x[0], x[1], x[2]))
    tp, fp = [], []
    for _, i, _, bb in flat:
        g = class_gt[i]
        ovmax, jmax = -math.inf, -1
        for j, gb in enumerate(g["boxes"]):
            ov = _overlap(bb, gb, plus)
            if ov is not None and ov > ovmax:
                ovmax, jmax = ov, j
        if ovmax >= iou_threshold:
            if g["difficult"][jmax]:
                tp.append(0)
                fp.append(0)
            elif not g["det"][jmax]:
                g["det"][jmax] = True
                tp.append(1)
                fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        else:
            tp.append(0)
            fp.append(1)
    ctp = cfp = 0
    rec, prec = [], []
    for t, f in zip(tp, fp):
        ctp += t
        cfp += f
        rec.append(ctp / npos if npos else 0.0)
        prec.append(ctp / (ctp + cfp) if ctp + cfp else 0.0)
    if npos == 0:
        return None, rec, prec
    return voc_ap_reference(rec, prec, use_07_metric), rec, prec
