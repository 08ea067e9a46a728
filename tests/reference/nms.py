"""Slow numpy references for non-maximum suppression, written from DESIGN.md section 4.

- Greedy NMS: rank by score descending, ties by lower index; drop `score <= score_threshold` and boxes with a
  NaN or inf coordinate (they never suppress and are never kept);
  keep a box unless its IoU with a kept box is strictly greater than `iou_threshold`.
- Degenerate boxes (area `max(x2-x1,0)*max(y2-y1,0) == 0`) have IoU 0 with everything.
- IoU in float32, `inter / (area_i + area_j - inter)`, one rounding per operation, thresholds
  rounded to float32 (as TensorFlow's NMS kernels compute it), so the op must match exactly.
- Batched: per-class greedy NMS per image (at most `max_detections_per_class`), pairs merged by
  score, ties by lower class then selection order, first `max_detections` returned; padding:
  boxes -1, scores 0, labels -1. Class-agnostic: one NMS per image on each box's best score
  (lowest class among equal maxima), results in selection order.
- Gaussian soft-NMS, TensorFlow 2.21 convention: select the highest current score (ties: lower
  index), multiply every remaining score by `exp(-0.5 * iou**2 / sigma)`, drop those now
  `<= score_threshold`; no hard suppression.
"""

import numpy as np

F32 = np.float32


def iou_row(box, others):
    """IoU (float32) of one xyxy box with each of `others` [M, 4]; 0 when either is degenerate."""
    box = np.asarray(box, F32)
    others = np.asarray(others, F32).reshape(-1, 4)
    zero = F32(0)
    area = np.maximum(box[2] - box[0], zero) * np.maximum(box[3] - box[1], zero)
    areas = np.maximum(others[:, 2] - others[:, 0], zero) * np.maximum(others[:, 3] - others[:, 1], zero)
    iw = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), zero)
    ih = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), zero)
    inter = iw * ih
    out = np.zeros(len(others), F32)
    ok = (area > 0) & (areas > 0)
    if ok.any():
        out[ok] = inter[ok] / ((area + areas[ok]) - inter[ok])
    return out


def ranking(scores):
    """Indices sorted by score descending, ties by lower index."""
    scores = np.asarray(scores, F32)
    return np.lexsort((np.arange(len(scores)), -scores))


def nms_reference(boxes, scores, iou_threshold, score_threshold=-np.inf, max_output_size=None):
    """Greedy NMS; returns int32 kept indices in selection order."""
    boxes = np.asarray(boxes, F32).reshape(-1, 4)
    scores = np.asarray(scores, F32).reshape(-1)
    limit = len(scores) if max_output_size is None else max_output_size
    thr_iou, thr_score = F32(iou_threshold), F32(score_threshold)
    kept = []
    for i in ranking(scores):
        if len(kept) >= limit:
            break
        if not scores[i] > thr_score or not np.isfinite(boxes[i]).all():  # also drops NaN scores
            continue
        if kept and (iou_row(boxes[i], boxes[kept]) > thr_iou).any():
            continue
        kept.append(int(i))
    return np.asarray(kept, np.int32)


def soft_nms_reference(boxes, scores, sigma, score_threshold=-np.inf, max_output_size=None):
    """Gaussian soft-NMS (TF 2.21 convention); returns (indices int32, rescored scores float32)."""
    boxes = np.asarray(boxes, F32).reshape(-1, 4)
    current = np.asarray(scores, np.float64).reshape(-1).copy()
    limit = len(current) if max_output_size is None else max_output_size
    thr = float(F32(score_threshold))
    alive = [i for i in range(len(current)) if current[i] > thr and np.isfinite(boxes[i]).all()]
    picked, picked_scores = [], []
    while alive and len(picked) < limit:
        best = max(alive, key=lambda i: (current[i], -i))
        alive.remove(best)
        picked.append(best)
        picked_scores.append(current[best])
        if alive:
            overlaps = iou_row(boxes[best], boxes[alive]).astype(np.float64)
            current[alive] *= np.exp(-0.5 * overlaps**2 / sigma)
            alive = [i for i in alive if current[i] > thr]
    return np.asarray(picked, np.int32), np.asarray(picked_scores, F32)


def _best_class(scores):
    best = scores.max(axis=-1)
    label = np.argmax(scores == best[..., None], axis=-1)  # lowest class among equal maxima
    return best, label


def batched_nms_reference(
    boxes,
    scores,
    labels=None,
    *,
    iou_threshold=0.5,
    score_threshold=0.05,
    max_detections=100,
    max_detections_per_class=None,
    class_agnostic=False,
    soft_nms_sigma=0.0,
):
    """Per-class NMS per image, merged and padded; returns the dict of the batched op (numpy)."""
    boxes = np.asarray(boxes, F32)
    scores = np.asarray(scores, F32)
    if labels is not None:
        labels = np.asarray(labels)
        num_classes = max(int(labels.max(initial=-1)) + 1, 1)
        per_class_scores = np.full(scores.shape + (num_classes,), -np.inf, F32)
        for c in range(num_classes):
            per_class_scores[..., c] = np.where(labels == c, scores, -np.inf)
        scores = per_class_scores
    finite = np.isfinite(np.asarray(boxes, F32)).all(axis=-1)  # [B, N] or [B, N, C]: non-finite boxes never count
    scores = np.where(finite[..., None] if finite.ndim < scores.ndim else finite, scores, F32(np.nan))
    scores = np.where(np.isnan(scores), F32(-np.inf), scores)
    batch = scores.shape[0]
    per_class = max_detections if max_detections_per_class is None else max_detections_per_class
    out = {
        "boxes": np.full((batch, max_detections, 4), -1, F32),
        "scores": np.zeros((batch, max_detections), F32),
        "labels": np.full((batch, max_detections), -1, np.int32),
        "num_detections": np.zeros(batch, np.int32),
    }

    def run(row_boxes, row_scores, limit):
        if soft_nms_sigma > 0:
            return soft_nms_reference(row_boxes, row_scores, soft_nms_sigma, score_threshold, limit)
        kept = nms_reference(row_boxes, row_scores, iou_threshold, score_threshold, limit)
        return kept, row_scores[kept]

    for b in range(batch):
        found = []  # (score, class, selection order, box)
        if class_agnostic:
            best, best_label = _best_class(scores[b]) if scores.shape[1] else (np.zeros(0, F32), np.zeros(0, int))
            image_boxes = boxes[b] if boxes.ndim == 3 else boxes[b, np.arange(len(best_label)), best_label]
            kept, kept_scores = run(image_boxes, best, max_detections)
            found = [(s, int(best_label[i]), k, image_boxes[i]) for k, (i, s) in enumerate(zip(kept, kept_scores))]
        else:
            for c in range(scores.shape[2]):
                class_boxes = boxes[b] if boxes.ndim == 3 else boxes[b, :, c]
                kept, kept_scores = run(class_boxes, scores[b, :, c], per_class)
                found += [(s, c, k, class_boxes[i]) for k, (i, s) in enumerate(zip(kept, kept_scores))]
        # per class: score, then lower class, then selection order; class-agnostic: selection order
        found.sort(key=lambda item: (-float(item[0]), 0 if class_agnostic else item[1], item[2]))
        found = found[:max_detections]
        out["num_detections"][b] = len(found)
        for j, (s, c, _, box) in enumerate(found):
            out["boxes"][b, j] = box
            out["scores"][b, j] = s
            out["labels"][b, j] = c
    return out
