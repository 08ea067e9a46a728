"""Slow numpy reference for RPN proposal generation (Faster R-CNN; Detectron2's find_top_rpn_proposals).

Per image and level: among the anchors centred inside the image (0 <= centre < size), top-k logits
(ties: lower index), decode with weights (1, 1, 1, 1) and the
log(1000/16) clamp, clip to the image, drop boxes with width or height <= min_size, greedy NMS (ranked
by logit, ties by position, IoU strictly above the threshold suppresses; IoU in float32); then the
post-NMS top-k over all levels by logit (ties: lower level, then NMS order).
"""

import math

import numpy as np

from tests.reference.boxes import delta_decode
from tests.reference.nms import nms_reference


def proposals_image(levels, image_hw, pre_nms_topk, post_nms_topk, iou_threshold, min_size):
    """levels: list of (logits [A], deltas [A, 4], anchors [A, 4]) of one image.

    Returns rois [post, 4] (-1 padding), scores [post] (sigmoid, 0 padding), count.
    """
    h, w = image_hw
    clamp = math.log(1000.0 / 16.0)
    candidates = []  # (logit, level, nms order, box)
    for level, (logits, deltas, anchors) in enumerate(levels):
        inside = [i for i in range(len(logits))
                  if 0.0 <= (anchors[i][0] + anchors[i][2]) / 2.0 < w and 0.0 <= (anchors[i][1] + anchors[i][3]) / 2.0 < h]
        order = sorted(inside, key=lambda i: (-float(logits[i]), i))[:pre_nms_topk]
        boxes, scores = [], []
        for i in order:
            x1, y1, x2, y2 = delta_decode(anchors[i], deltas[i], (1.0, 1.0, 1.0, 1.0), clamp)
            x1, x2 = min(max(x1, 0.0), w), min(max(x2, 0.0), w)
            y1, y2 = min(max(y1, 0.0), h), min(max(y2, 0.0), h)
            if x2 - x1 > min_size and y2 - y1 > min_size:
                boxes.append([x1, y1, x2, y2])
                scores.append(float(logits[i]))
        for rank, k in enumerate(nms_reference(boxes, scores, iou_threshold).tolist()):
            candidates.append((scores[k], level, rank, boxes[k]))
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    candidates = candidates[:post_nms_topk]
    rois = -np.ones((post_nms_topk, 4))
    out_scores = np.zeros(post_nms_topk)
    for s, c in enumerate(candidates):
        rois[s] = c[3]
        out_scores[s] = 1.0 / (1.0 + math.exp(-c[0]))
    return rois, out_scores, len(candidates)
